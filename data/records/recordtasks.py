"""The records task family: short personal records and instructions about their fields.

Shared by the generator (make_data.py), the judge (judge.py), the gold scorer (score.py) and the
diagnosis (diagnose.py), so that they can never disagree about what a prompt asks or what its
answer is: a prompt is drawn by filling a template, and read back by parsing the records and
matching the question against the same template table.

A prompt is one to three record lines, then the question on the last line:

    name: Ada Brook; city: Lund; age: 34
    name: Ben Clay; city: Riga; age: 51
    Who is the oldest?

Python 3 standard library only.
"""
import hashlib
import random
import re

# The population: every record shows one of these 24 people as they are (first name, surname,
# city, age), so the pretraining text can state the facts records are made of, as a real corpus
# states facts about the world. First names, surnames and ages are distinct; two people share a
# city. The judge and the scorer read the answer from the prompt's records alone.
PEOPLE = [
    ("Ada", "Hill", "Riga", 43), ("Ben", "Cole", "Lyon", 26), ("Cora", "Kemp", "Bern", 55),
    ("Dan", "York", "Riga", 24), ("Eva", "Moss", "Split", 23), ("Finn", "Wood", "Basel", 33),
    ("Gus", "Lowe", "Ghent", 51), ("Hana", "Hart", "Graz", 47), ("Ivo", "Lake", "Oslo", 40),
    ("Jana", "Drake", "Lyon", 34), ("Karl", "West", "Porto", 38), ("Lena", "Ash", "Graz", 50),
    ("Milo", "North", "Bern", 31), ("Nora", "Brook", "Malmo", 29), ("Otto", "Pike", "Lund", 27),
    ("Pia", "Stone", "Ghent", 25), ("Rosa", "Ford", "Turin", 42), ("Sven", "Birch", "Lund", 45),
    ("Tara", "Dale", "Basel", 22), ("Ugo", "Clay", "Oslo", 49), ("Vera", "Frost", "Porto", 46),
    ("Will", "Vale", "Split", 36), ("Yara", "Gray", "Malmo", 35), ("Zeno", "Reed", "Turin", 30),
]
FIRST = [p[0] for p in PEOPLE]
LAST = [p[1] for p in PEOPLE]
CITIES = sorted(set(p[2] for p in PEOPLE))
AGE_LO, AGE_HI = 20, 59

# (task, variant, question). The variant says which field or format is asked for.
TEMPLATES = [
    ("field", "city", "What is the city?"),
    ("field", "city", "Which city does this person live in?"),
    ("field", "city", "Where does this person live?"),
    ("field", "age", "What is the age?"),
    ("field", "age", "How old is this person?"),
    ("field", "first", "What is the first name?"),
    ("field", "first", "What is this person's first name?"),
    ("field", "last", "What is the surname?"),
    ("field", "last", "What is this person's last name?"),
    ("field", "name", "What is the full name?"),
    ("field", "name", "Who is this?"),
    ("format", "last_first_age", "Write the record as 'Surname, First (age)'."),
    ("format", "last_first_age", "Reformat as: Surname, First (age)."),
    ("format", "first_from_city", "Write the record as 'First from City'."),
    ("format", "first_from_city", "Reformat as: First from City."),
    ("format", "name_age", "Write the record as 'First Surname, age'."),
    ("format", "name_age", "Reformat as: First Surname, age."),
    ("lookup", "who_city", "Who lives in {city}?"),
    ("lookup", "who_city", "Which person lives in {city}?"),
    ("lookup", "age_of", "How old is {first}?"),
    ("lookup", "age_of", "What is the age of {first}?"),
    ("lookup", "city_of", "Where does {first} live?"),
    ("lookup", "city_of", "Which city is {first} from?"),
    ("oldest", "oldest", "Who is the oldest?"),
    ("oldest", "oldest", "Which person is oldest?"),
    ("oldest", "youngest", "Who is the youngest?"),
    ("oldest", "youngest", "Which person is youngest?"),
    ("alpha", "first", "List the first names in alphabetical order."),
    ("alpha", "first", "Sort the first names alphabetically."),
    ("alpha", "last", "List the surnames in alphabetical order."),
    ("alpha", "last", "Sort the surnames alphabetically."),
]
TASKS = ["field", "format", "lookup", "oldest", "alpha"]

# Filler the demonstrations put around answers; the grader skips leading ones.
OPENERS = ["Sure!", "Of course!", "Okay.", "Good question!", "Let me see.", "Well,",
           "Happy to help.", "Hmm."]
INTROS = ["The answer is", "I think the answer is", "It is", "That would be",
          "Here is the answer:", "Answer:", "According to the record, it is"]
TAILS = ["I hope this helps!", "Let me know if you need anything else.",
         "Is there anything else?", "Records are easy to read.", "Have a nice day!"]

RECORD_RE = re.compile(r"^name: ([A-Za-z]+) ([A-Za-z]+); city: ([A-Za-z]+); age: (\d+)$")
HUMAN_RE = re.compile(r"^Human: (.*)\n\nAssistant:$", re.S)

UNFINISHED_PENALTY = 10     # a completion cut off at the length limit (when "ended" is known)
MAX_NOISE = 0.4


class Task:
    """A parsed prompt: its records, task kind, variant and the answer."""

    def __init__(self, records, kind, variant, question, answer):
        self.records = records      # list of (first, last, city, age)
        self.kind = kind
        self.variant = variant
        self.question = question
        self.answer = answer


def record_line(r):
    return "name: %s %s; city: %s; age: %d" % r


def split_of(prompt):
    """The split of a prompt, from its text alone: eval 0-11, rm 12-24, ppo 25-49, sft 50-99."""
    b = int(hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:8], 16) % 100
    if b < 12:
        return "eval"
    if b < 25:
        return "rm"
    if b < 50:
        return "ppo"
    return "sft"


def solve(records, kind, variant, slot):
    """The answer of a task over records; slot is the city or first name a lookup names."""
    if kind == "field":
        f, l, c, a = records[0]
        return {"city": c, "age": str(a), "first": f, "last": l, "name": f + " " + l}[variant]
    if kind == "format":
        f, l, c, a = records[0]
        return {"last_first_age": "%s, %s (%d)" % (l, f, a),
                "first_from_city": "%s from %s" % (f, c),
                "name_age": "%s %s, %d" % (f, l, a)}[variant]
    if kind == "lookup":
        if variant == "who_city":
            hits = [r for r in records if r[2] == slot]
            return hits[0][0] + " " + hits[0][1] if len(hits) == 1 else None
        hits = [r for r in records if r[0] == slot]
        if len(hits) != 1:
            return None
        return str(hits[0][3]) if variant == "age_of" else hits[0][2]
    if kind == "oldest":
        ages = [r[3] for r in records]
        a = max(ages) if variant == "oldest" else min(ages)
        if ages.count(a) != 1:
            return None
        r = records[ages.index(a)]
        return r[0] + " " + r[1]
    if kind == "alpha":
        i = 0 if variant == "first" else 1
        return ", ".join(sorted(r[i] for r in records))
    return None


def _record_count(kind):
    return 1 if kind in ("field", "format") else None


def sample(rng, kind=None):
    """Draws a task (of kind, or any): returns (prompt, Task)."""
    while True:
        k = kind or rng.choice(TASKS)
        tpl = rng.choice([t for t in TEMPLATES if t[0] == k])
        n = _record_count(k) or rng.choice([2, 3])
        records = rng.sample(PEOPLE, n)
        if len(set(r[2] for r in records)) < n:     # distinct cities: a lookup by city is unique
            continue
        target = rng.choice(records)
        q = tpl[2].format(city=target[2], first=target[0])
        slot = target[2] if tpl[1] == "who_city" else target[0]
        ans = solve(records, k, tpl[1], slot)
        if ans is None:
            continue
        prompt = "\n".join(record_line(r) for r in records) + "\n" + q
        return prompt, Task(records, k, tpl[1], q, ans)


def _question_regex(text):
    parts = re.split(r"(\{city\}|\{first\})", text)
    out = ""
    for p in parts:
        out += "([A-Za-z]+)" if p in ("{city}", "{first}") else re.escape(p)
    return re.compile("^" + out + "$")


_QUESTIONS = [(k, v, _question_regex(q), "{city}" in q) for k, v, q in TEMPLATES]


def parse(prompt):
    """The Task a prompt asks (raw, or rendered as 'Human: ...\\n\\nAssistant:'), or None."""
    m = HUMAN_RE.match(prompt)
    if m:
        prompt = m.group(1)
    lines = prompt.strip().split("\n")
    if len(lines) < 2:
        return None
    records = []
    for line in lines[:-1]:
        m = RECORD_RE.match(line.strip())
        if not m:
            return None
        records.append((m.group(1), m.group(2), m.group(3), int(m.group(4))))
    q = lines[-1].strip()
    for kind, variant, rx, by_city in _QUESTIONS:
        m = rx.match(q)
        if not m:
            continue
        if (_record_count(kind) == 1) != (len(records) == 1):
            continue
        slot = m.group(1) if m.groups() else None
        ans = solve(records, kind, variant, slot)
        if ans is None:
            return None
        return Task(records, kind, variant, q, ans)
    return None


# ---------------------------------------------------------------------------------------------
# grading


def _skip_filler(s):
    again = True
    while again:
        again = False
        s = s.lstrip()
        for f in OPENERS + INTROS:
            if s.lower().startswith(f.lower()):
                rest = s[len(f):]
                if not rest or rest[0].isspace() or f[-1] in ".,!?:":
                    s = rest
                    again = True
                    break
    return s


def extract_answer(response):
    """After leading filler, up to the first line break or sentence end; quotes and final
    punctuation removed."""
    s = _skip_filler(response)
    s = s.split("\n", 1)[0]
    m = re.search(r"[.!?](\s|$)", s)
    if m:
        s = s[:m.start()]
    return s.strip().strip("\"'").rstrip(".!?,;: ").strip()


def _norm(s):
    return re.sub(r"\s+", " ", s).strip().lower()


def grade(task, response):
    """A dict: correct, extra_words, leak, junk, empty, score (1000 correct first, then short
    and clean: 1000*correct - extra words - 20*leak - 5*junk - 100*empty)."""
    words = len(response.split())
    g = {"correct": 0, "empty": int(words == 0),
         "leak": int("Human:" in response or "Assistant:" in response),
         "junk": int(any((ord(c) < 0x20 and c not in "\n\t\r") or ord(c) >= 0x7f
                         for c in response))}
    want = len(task.answer.split()) if task else 1
    g["extra_words"] = max(0, words - want)
    if task and words:
        g["correct"] = int(_norm(extract_answer(response)) == _norm(task.answer))
    g["score"] = (1000 * g["correct"] - g["extra_words"] - 20 * g["leak"] - 5 * g["junk"]
                  - 100 * g["empty"])
    return g


def noise_rng(seed, prompt, completions):
    """The random stream of one request's label noise: a function of (seed, request)."""
    h = hashlib.sha256(str(seed).encode())
    h.update(prompt.encode("utf-8", "replace") + b"\0")
    for c in completions:
        h.update(c.encode("utf-8", "replace") + b"\0")
    return random.Random(int(h.hexdigest()[:16], 16))


def rank(prompt, completions, ended=None, noise=0.0, seed=1):
    """Ranks of the completions (1 = best, equal = tie), or None for a prompt of no known task.
    Noise: one pass over the distinct score groups, best first, swapping neighbours with
    probability noise * groups / 2 (the demo judge's rule)."""
    task = parse(prompt)
    if task is None:
        return None
    scores = []
    for i, c in enumerate(completions):
        s = grade(task, c)["score"]
        if ended is not None and ended[i] is False:
            s -= UNFINISHED_PENALTY
        scores.append(s)
    order = sorted(set(scores), reverse=True)
    m = len(order)
    if noise > 0 and m > 1:
        rng = noise_rng(seed, prompt, completions)
        p = noise * m / 2
        for i in range(m - 1):
            if rng.random() < p:
                order[i], order[i + 1] = order[i + 1], order[i]
    return [order.index(s) + 1 for s in scores]
