# Sourced by shell tests: tiny_data N writes N arithmetic examples into the current directory as
# corpus.txt (plain text), demos.jsonl (prompt/response), rank.jsonl (3-way rankings) and
# prompts.jsonl (prompts only), the same inputs every time.
tiny_data() {
    i=0; : > corpus.txt; : > demos.jsonl; : > rank.jsonl; : > prompts.jsonl
    while [ $i -lt "$1" ]; do
        a=$((i * 7 % 19)); b=$((i * 11 % 17))
        printf 'What is %d plus %d? %d\n' $a $b $((a + b)) >> corpus.txt
        printf '{"prompt": "What is %d plus %d?", "response": "%d"}\n' $a $b $((a + b)) >> demos.jsonl
        printf '{"prompt": "What is %d plus %d?", "completions": ["%d", "%d", "no"], "ranking": "1>2>3"}\n' $a $b $((a + b)) $((a + b + 1)) >> rank.jsonl
        printf '{"prompt": "Add %d and %d"}\n' $a $b >> prompts.jsonl
        i=$((i + 1))
    done
}
