// chat: a model's own chat template (tokenizer_config.json's `chat_template`, run by jinja.h)
// applied to conversations: rendering, the assistant turns of a rendered conversation, prompts
// ready for the next assistant turn, and the tokens that end a turn (where generation stops).
//
// Assistant turns are found by rendering, never by guessing token offsets: for the assistant
// message i of a conversation m[0..n), A = render(m[0..i), add_generation_prompt) and
// B = render(m[0..i]) must satisfy "A is a prefix of B, and B a prefix of render(m[0..n))"
// (the prefix property); the turn is the text B minus A. The rendered conversation is cut into
// segments at these boundaries (prompt text, assistant text, prompt text, ...). A template that
// breaks the property (one that rewrites earlier turns depending on later ones) is an error that
// names the message and the byte where the renderings differ.
//
// Text is tokenized with special tokens recognised (TOK_ALLOW_SPECIAL), since the template writes
// them as text (<|im_start|>, <|eot_id|>); nothing is added by the post-processor, as Hugging
// Face's apply_chat_template does. Each segment is tokenized alone, so no token straddles a
// prompt/assistant boundary and a prompt's tokens are the same in training and in generation.
//
// Ownership: a ChatTemplate is made by chat_template_load and freed by chat_template_free (NULL
// is fine); it owns its parsed template and a copy of tokenizer_config.json. It is only read
// after loading, so several threads may render with it at once. Strings returned in *out are
// malloc'd and the caller's. Messages (DatasetMessage) are borrowed.
//
// Errors: 0, or -1 with one line in err (util_err) naming the file (or "data.chat_template") and
// the problem; template errors carry jinja's "line L column C". No global state.
#ifndef CHAT_H
#define CHAT_H
#include "dataset.h"
#include "tokenizer.h"
#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ChatTemplate ChatTemplate;

// The template: override when not NULL and not "" (inline template text when it holds "{{" or
// "{%", else the path of a file holding it), else dir/tokenizer_config.json's chat_template.
// tokenizer_config.json (when dir has one) also gives bos_token / eos_token to the template.
// *out is NULL and 0 is returned when there is no template at all (no override, and no
// tokenizer_config.json or no chat_template in it): callers then keep their built-in format.
int  chat_template_load(ChatTemplate **out, const char *dir, const char *override, char *err,
                        size_t errlen);
void chat_template_free(ChatTemplate *ct);
const char *chat_template_origin(const ChatTemplate *ct);   // the file or "data.chat_template"

// Renders m[0..n) (add_gen: the generation prompt after the last message) into *out.
int chat_render(const ChatTemplate *ct, const DatasetMessage *m, int n, int add_gen, char **out,
                char *err, size_t errlen);

// One piece of a rendered conversation: text[start..end), assistant = 1 for an assistant turn.
typedef struct {
    size_t start, end;
    int assistant;
} ChatSegment;
// Renders m[0..n) and cuts it into segments by the prefix property (above). *text and *segs are
// malloc'd (the caller frees both); empty segments are left out. n_msgs >= 1.
int chat_segments(const ChatTemplate *ct, const DatasetMessage *m, int n, char **text,
                  ChatSegment **segs, int *n_segs, char *err, size_t errlen);

// Appends the tokens of render(m[0..n), add_generation_prompt) to *out.
int chat_encode_prompt(const ChatTemplate *ct, const Tokenizer *tok, const DatasetMessage *m,
                       int n, TokIds *out, char *err, size_t errlen);

typedef enum { CHAT_SYSTEM, CHAT_USER, CHAT_ASSISTANT, CHAT_BAD } ChatRole;
ChatRole chat_role(const char *role);   // "system", "user", "assistant"; else (or NULL) CHAT_BAD

// Checks a conversation's roles and contents for a prompt (final_assistant 0: it ends with a user
// message) or a training example (1: it ends with an assistant message): [system] then turns
// alternating user, assistant. where names it in messages ("file:line").
int chat_check_messages(const DatasetMessage *m, int n, int final_assistant, const char *where,
                        char *err, size_t errlen);

// Reads a JSON list of {"role": str, "content": str} into *msgs (malloc'd array of n; the strings
// point into arr, which must outlive them). key names the list in messages ("where: key[2]...").
int chat_messages_from_json(const cJSON *arr, const char *key, DatasetMessage **msgs, int *n,
                            const char *where, char *err, size_t errlen);

// Tokens that end a generation, at most max of them, without repeats, into ids[0..*n): the
// tokenizer's EOS, eos_token_id (an id or a list) of dir/config.json and
// dir/generation_config.json (dir may be NULL; missing files are fine), and the template's
// end-of-turn token: the first special token the template writes after an assistant message's
// content (<|im_end|>, <|eot_id|>, </s>); ct may be NULL.
int chat_stop_ids(const ChatTemplate *ct, const Tokenizer *tok, const char *dir, int32_t *ids,
                  int max, int *n, char *err, size_t errlen);
#endif
