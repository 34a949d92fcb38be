"""Write the tiny smoke-study datasets (tests/data/*.jsonl). Deterministic; rerun to regenerate."""

import itertools
import json
import random
from pathlib import Path

HERE = Path(__file__).parent
POS = ["great", "wonderful", "lovely", "excellent", "delightful"]
NEG = ["terrible", "awful", "boring", "dreadful", "poor"]


def sentiment(domain: str, things: list[str]) -> list[dict]:
    rows = []
    for i, (thing, word, label) in enumerate(
        itertools.product(things, POS + NEG, ["x"])
    ):
        label = "positive" if word in POS else "negative"
        rows.append({"id": f"{domain}{i}", "doc": f"{domain}-{thing}",
                     "text": f"The {thing} was {word}.", "label": label})
    return rows


def nli(name: str, people: list[str], acts: list[tuple[str, str]]) -> list[dict]:
    rows = []
    for p, (act, other) in itertools.product(people, acts):
        premise = f"{p} {act} in the morning."
        rows.append({"pair": f"{p}-{act}", "premise": premise, "hypothesis": f"{p} {act}.", "gold": "entailment"})
        rows.append({"pair": f"{p}-{act}", "premise": premise, "hypothesis": f"{p} never {act}.", "gold": "contradiction"})
        rows.append({"pair": f"{p}-{act}", "premise": premise, "hypothesis": f"{p} {other} later.", "gold": "neutral"})
    return rows


def qg(places: list[str], things: list[str]) -> list[dict]:
    rows = []
    for i, (place, thing) in enumerate(itertools.product(places, things)):
        rows.append({"context": f"The {thing} is kept in {place}.", "answer": place,
                     "question": f"Where is the {thing} kept?", "para": f"{place}"})
    return rows


def rag(domain: str, subjects: list[str], facts: list[tuple[str, str, str]]) -> tuple[list[dict], list[dict]]:
    """A tiny RAG corpus: one passage per subject, one question per (subject, fact)."""
    passages, questions = [], []
    for s, subject in enumerate(subjects):
        pid = f"{domain}-p{s}"
        text = " ".join(f"The {subject} {verb} {values[s % len(values)]}." for verb, _, values in
                        [(v, q, vals.split("|")) for v, q, vals in facts])
        passages.append({"id": pid, "title": subject, "text": text})
        for f, (verb, question, values) in enumerate(facts):
            answer = values.split("|")[s % len(values.split("|"))]
            questions.append({"id": f"{domain}-q{s}.{f}", "question": question.format(subject=subject),
                              "answers": [answer], "gold": [pid]})
    return passages, questions


def s3ft_sets() -> dict[str, list[dict]]:
    """Tiny S3FT sets: arithmetic word problems, code with unit tests, a multiple-choice benchmark."""
    math = [{"id": f"m{a}.{b}", "question": f"Tom has {a} apples and gets {b} more. How many apples does he have?",
             "answer": str(a + b)} for a in range(2, 8) for b in range(1, 5)]
    code = [{"task_id": f"c{k}", "prompt": f"def add_{k}(x):\n    \"\"\"Return x plus {k}.\"\"\"\n",
             "canonical_solution": f"    return x + {k}\n", "entry_point": f"add_{k}",
             "test": f"def check(f):\n    assert f(1) == {1 + k}\n    assert f(-{k}) == 0\n"} for k in range(1, 25)]
    mc = [{"id": f"g{i}", "question": f"Which number is larger than {i}?",
           "options": [str(i + 1 + j) if j == 0 else str(i - j) for j in range(3)]} for i in range(12)]
    for row in mc:
        row["gold"] = row["options"][0]
    return {"s3ft_math.jsonl": math, "s3ft_code.jsonl": code, "s3ft_mc.jsonl": mc}


def main() -> None:
    random.seed(0)
    sets = {
        "sent_food.jsonl": sentiment("food", ["soup", "bread", "cake", "salad", "pasta"]),
        "sent_film.jsonl": sentiment("film", ["movie", "plot", "actor", "ending", "music"]),
        "nli_a.jsonl": nli("a", ["Ann", "Bob", "Cid", "Dee", "Eve"], [("ran", "slept"), ("sang", "ate"), ("read", "swam")]),
        "nli_b.jsonl": nli("b", ["Fay", "Gus", "Hal", "Ida", "Jon"], [("cooked", "left"), ("wrote", "sat"), ("drove", "hid")]),
        "qg_home.jsonl": qg(["the kitchen", "the garage", "the attic", "the cellar", "the hall"],
                            ["key", "lamp", "box", "coat", "map", "cup"]),
        "qg_town.jsonl": qg(["the bank", "the museum", "the school", "the library", "the station"],
                            ["statue", "clock", "flag", "bell", "bench", "sign"]),
    }
    zoo = rag("zoo", ["lion", "zebra", "otter", "panda", "camel", "heron", "koala", "tapir", "bison", "lemur",
                      "hyena", "moose"],
              [("eats", "What does the {subject} eat?", "meat|grass|fish|bamboo|dates|frogs|leaves"),
               ("sleeps in", "Where does the {subject} sleep?", "a cave|the barn|a pond|a tree|the sand")])
    city = rag("city", ["bakery", "museum", "library", "station", "harbour", "stadium", "theatre", "market",
                        "gallery", "castle", "chapel", "tower"],
               [("opens at", "When does the {subject} open?", "six|seven|eight|nine|ten"),
                ("is painted", "What colour is the {subject}?", "red|blue|green|white|yellow|black")])
    sets.update({"rag_zoo_passages.jsonl": zoo[0], "rag_zoo_questions.jsonl": zoo[1],
                 "rag_city_passages.jsonl": city[0], "rag_city_questions.jsonl": city[1]})
    sets.update(s3ft_sets())
    for name, rows in sets.items():
        random.shuffle(rows)
        with open(HERE / name, "w") as fh:
            for row in rows:
                fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
