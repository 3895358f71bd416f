"""CPU per text of the builtin embedding model through torch and through onnxruntime.

Run: ``.venv/bin/python -m tests.bench.question_encoder`` (one thread each, as an embedding
process computes). Prints CPU ms per text for SciFact test questions one at a time and in
batches of 8, and for corpus abstracts cut to 60 and 200 words, with onnxruntime's ratio to torch
measured in the same run. ``rag.llm.onnx_encoder`` sends only short batches to onnxruntime;
this is where its thresholds come from.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rag.llm.onnx_encoder import OnnxSentenceEncoder
from tests.bench import SCIFACT


def cpu_ms_per_text(encode: Callable[[list[str]], object], batches: list[list[str]], rounds: int) -> float:
    encode(batches[0])  # warm
    started = time.process_time()
    for _ in range(rounds):
        for batch in batches:
            encode(batch)
    return (time.process_time() - started) * 1000 / (rounds * sum(len(b) for b in batches))


def read_texts(data: Path, count: int) -> tuple[list[str], list[str]]:
    with open(data / "queries.jsonl", encoding="utf-8") as fh:
        questions = [json.loads(line)["text"] for line, _ in zip(fh, range(count), strict=False)]
    with open(data / "corpus.jsonl", encoding="utf-8") as fh:
        abstracts = [json.loads(line)["text"] for line, _ in zip(fh, range(count), strict=False)]
    return questions, abstracts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SCIFACT)
    parser.add_argument("--texts", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    from rag.llm.embedding_model import BuiltinEmbedding

    torch.set_num_threads(1)
    model = BuiltinEmbedding(onnx_short_texts=False)
    model.warm_up()
    st: SentenceTransformer = model._model
    with tempfile.TemporaryDirectory() as cache:
        onnx = OnnxSentenceEncoder.load(st, Path(cache))
    if onnx is None:
        raise SystemExit("the ONNX export failed or did not match torch (see the log)")

    questions, abstracts = read_texts(args.data, args.texts)
    cases = {
        "question, 1 per call": [[q] for q in questions],
        "question, 8 per call": [questions[i:i + 8] for i in range(0, len(questions), 8)],
        "question, 32 per call": [questions[i:i + 32] for i in range(0, len(questions), 32)],
        "60 words, 1 per call": [[" ".join(a.split()[:60])] for a in abstracts[:16]],
        "60 words, 8 per call": [[" ".join(a.split()[:60]) for a in abstracts[i:i + 8]] for i in range(0, 16, 8)],
        "200 words, 32 per call": [[" ".join(a.split()[:200]) for a in abstracts[:32]]],
    }
    print(f"{'texts':<24}{'torch ms':>10}{'onnx ms':>10}{'onnx/torch':>12}")
    for name, batches in cases.items():
        torch_ms = cpu_ms_per_text(lambda b: st.encode(b, batch_size=32, normalize_embeddings=True), batches,
                                   args.rounds)
        onnx_ms = cpu_ms_per_text(onnx.encode, batches, args.rounds)
        print(f"{name:<24}{torch_ms:>10.2f}{onnx_ms:>10.2f}{onnx_ms / torch_ms:>12.2f}")


if __name__ == "__main__":
    main()
