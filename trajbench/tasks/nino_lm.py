"""NiNo's language tasks (LM1B-3-24, LM1B-2-32, WIKI-3-64) on the user's own tokenised corpus.

Knyazev et al., "Accelerating Training with Neuron Interaction and Nowcasting Networks"
(ICLR 2025; github.com/SamsungSAILMontreal/nino, MIT). Facts read at commit 84fb0cf
(``utils/lm.py``, ``train_lm.py``, ``dataset/dataset.py``):

=================  ===========  ======  =====  =====  ======  ==================
trajbench          NiNo         layers  width  heads  epochs  target perplexity
=================  ===========  ======  =====  =====  ======  ==================
``nino-lm1b-3-24`` LM1B-3-24    3       24     3      1       352
``nino-lm1b-2-32`` LM1B-2-32    2       32     2      1       319
``nino-wiki-3-64`` WIKI-3-64    3       64     4      4       147
=================  ===========  ======  =====  =====  ======  ==================

The model is Hugging Face's GPT-2 built from the ``gpt2`` config with those three numbers
changed (``AutoConfig.from_pretrained("gpt2", n_embd=.., n_layer=.., n_head=..)``):
vocabulary 50,257 (GPT-2's tokenizer), 1,024 positions, pre-LayerNorm blocks (eps 1e-5)
with ``Conv1D`` projections (weight shape (in, out)), a 4x MLP with the tanh GELU, dropout
0.1 on embeddings, attention and residuals, a final LayerNorm and an output layer tied to
the token embedding; GPT-2's initialisation (normal 0.02, ``c_proj`` weights 0.02 /
sqrt(2 n_layer)). Re-implemented here (no ``transformers`` needed) with Hugging Face's
parameter names, so a recorded state loads into ``GPT2LMHeadModel``. With GPT-2's
vocabulary the parameter counts are NiNo's: 1,252,464 (LM1B-3-24) and 1,666,464
(LM1B-2-32), as ``dataset/dataset.py`` lists them.

Training (``train_lm.py`` defaults): AdamW, lr 2e-4, weight decay 0.01, constant
schedule, batch 32, blocks of 1,024 tokens. The target is the validation perplexity,
``exp(val_loss)``.

Data: the user tokenises the corpus (GPT-2's tokenizer for NiNo's setting) and writes
token ids; see :func:`load_token_corpus` and ``docs/datasets.md``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import zlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trajbench._seeds import mix_seed
from trajbench.errors import TrajbenchError
from trajbench.tasks.base import Batch, Task, register_task
from trajbench.tasks.datasets import Split
from trajbench.tasks.vision_data import resolve_data_dir

__all__ = [
    "GPT2",
    "TokenCorpus",
    "load_token_corpus",
    "NinoLMTask",
    "NinoLM1B3x24",
    "NinoLM1B2x32",
    "NinoWiki3x64",
    "GPT2_VOCAB",
]

GPT2_VOCAB = 50257
META_FILE = "meta.json"
_DTYPES = {"uint16": np.uint16, "uint32": np.uint32}
_HASH_CHUNK = 1 << 24  # tokens hashed at a time (bounded memory on huge corpora)


# ---------------------------------------------------------------------- data
@dataclass(frozen=True)
class TokenCorpus:
    """A tokenised corpus: flat token arrays (memory-mapped) and its vocabulary size."""

    train: np.ndarray
    val: np.ndarray
    vocab_size: int
    directory: str
    fingerprint: str


def _read_tokens(folder: Path, stem: str, dtype: np.dtype | None) -> np.ndarray:
    npy, raw = folder / f"{stem}.npy", folder / f"{stem}.bin"
    if npy.is_file():
        try:
            array = np.load(npy, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            raise TrajbenchError(f"cannot read '{npy}' without pickle: {exc}") from None
        if array.ndim != 1 or array.dtype not in (np.uint16, np.uint32, np.int32, np.int64):
            raise TrajbenchError(
                f"'{npy}' holds a {array.ndim}-D {array.dtype} array; expected a flat array of"
                " uint16/uint32 token ids"
            )
        return array
    if raw.is_file():
        if dtype is None:
            raise TrajbenchError(
                f"'{folder / META_FILE}' must give \"dtype\" ('uint16' or 'uint32') for the raw file '{raw}'"
            )
        return np.memmap(raw, dtype=np.dtype(dtype).newbyteorder("<"), mode="r")
    raise TrajbenchError(
        f"no {stem} tokens in '{folder}': expected {stem}.bin (flat little-endian uint16/uint32"
        f" token ids) or {stem}.npy next to {META_FILE}"
    )


def _hash_tokens(digest: Any, tokens: np.ndarray) -> int:
    """Feed ``tokens`` to ``digest`` chunk by chunk; return the largest id."""
    top = 0
    digest.update(f"{tokens.dtype.str}{tokens.shape}".encode())
    for start in range(0, len(tokens), _HASH_CHUNK):
        chunk = np.ascontiguousarray(tokens[start : start + _HASH_CHUNK])
        digest.update(chunk.tobytes())
        if chunk.size:
            top = max(top, int(chunk.max()))
            if int(chunk.min()) < 0:
                raise TrajbenchError(f"token ids must be >= 0, but got {int(chunk.min())}")
    return top


@cache
def _load_corpus(folder: str) -> TokenCorpus:
    base = Path(folder)
    meta_path = base / META_FILE
    if not meta_path.is_file():
        raise TrajbenchError(
            f'no tokenised corpus in \'{base}\': expected {META_FILE} ({{"vocab_size": N, "dtype":'
            ' "uint16"}) with train.bin and val.bin (or .npy) beside it; see docs/datasets.md'
        )
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise TrajbenchError(f"cannot read '{meta_path}' as JSON: {exc}") from None
    vocab = meta.get("vocab_size") if isinstance(meta, dict) else None
    if isinstance(vocab, bool) or not isinstance(vocab, int) or vocab < 2:
        raise TrajbenchError(
            f"'{meta_path}' must give \"vocab_size\" as an int >= 2, but got {vocab!r}"
        )
    dtype_name = meta.get("dtype")
    if dtype_name is not None and dtype_name not in _DTYPES:
        raise TrajbenchError(
            f"'{meta_path}' gives dtype {dtype_name!r}; expected 'uint16' or 'uint32'"
        )
    dtype = np.dtype(_DTYPES[dtype_name]) if dtype_name else None
    train = _read_tokens(base, "train", dtype)
    val = _read_tokens(base, "val", dtype)
    digest = hashlib.sha256(f"vocab {vocab}".encode())
    top = max(_hash_tokens(digest, train), _hash_tokens(digest, val))
    if top >= vocab:
        raise TrajbenchError(
            f"token id {top} in '{base}' is not below vocab_size {vocab} of '{meta_path}'"
        )
    return TokenCorpus(train, val, vocab, str(base), digest.hexdigest()[:16])


def load_token_corpus(directory: str | os.PathLike[str]) -> TokenCorpus:
    """Read a tokenised corpus folder: ``meta.json`` plus train/val token ids.

    ``meta.json`` is ``{"vocab_size": 50257, "dtype": "uint16"}``; ``train.bin`` and
    ``val.bin`` are flat little-endian arrays of that dtype (nanoGPT's format); ``.npy``
    files (1-D, any unsigned or signed integer dtype, no pickle) are read instead when
    present and need no ``dtype``. Files are memory-mapped; every id must be below
    ``vocab_size``. Cached per process and folder.
    """
    return _load_corpus(str(Path(directory).expanduser().resolve()))


# --------------------------------------------------------------------- model
class _Conv1D(nn.Module):
    """Hugging Face's GPT-2 ``Conv1D``: a linear layer whose weight is stored (in, out)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(
            *x.shape[:-1], -1
        )


class _Attention(nn.Module):
    def __init__(self, d: int, n_head: int, dropout: float) -> None:
        super().__init__()
        self.n_head = n_head
        self.dropout = dropout
        self.c_attn = _Conv1D(d, 3 * d)
        self.c_proj = _Conv1D(d, d)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.c_attn(x).split(d, dim=2)
        shape = (b, t, self.n_head, d // self.n_head)
        q, k, v = (z.view(shape).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).reshape(b, t, d)))


class _MLP(nn.Module):
    def __init__(self, d: int, dropout: float) -> None:
        super().__init__()
        self.c_fc = _Conv1D(d, 4 * d)
        self.c_proj = _Conv1D(4 * d, d)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class _Block(nn.Module):
    def __init__(self, d: int, n_head: int, dropout: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(d, eps=1e-5)
        self.attn = _Attention(d, n_head, dropout)
        self.ln_2 = nn.LayerNorm(d, eps=1e-5)
        self.mlp = _MLP(d, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class _Transformer(nn.Module):
    def __init__(
        self, vocab: int, n_positions: int, d: int, n_layer: int, n_head: int, dropout: float
    ) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(n_positions, d)
        self.drop = nn.Dropout(dropout)
        self.h = nn.ModuleList(_Block(d, n_head, dropout) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d, eps=1e-5)


class GPT2(nn.Module):
    """GPT-2 (Radford et al. 2019) as Hugging Face's ``GPT2LMHeadModel`` lays it out.

    ``forward(idx)`` maps token ids (batch, time) to logits (batch, time, vocab).
    ``lm_head.weight`` is the token embedding itself (tied), so the state dict lists it
    as an alias, as Hugging Face's does.
    """

    def __init__(
        self,
        vocab: int,
        n_positions: int,
        n_embd: int,
        n_layer: int,
        n_head: int,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.transformer = _Transformer(vocab, n_positions, n_embd, n_layer, n_head, dropout)
        self.lm_head = nn.Linear(n_embd, vocab, bias=False)
        self.lm_head.weight = self.transformer.wte.weight
        for module in self.modules():
            if isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
        # GPT-2's scaled init of the residual projections (HF GPT2PreTrainedModel._init_weights).
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(param, std=0.02 / math.sqrt(2 * n_layer))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        tr = self.transformer
        x = tr.drop(tr.wte(idx) + tr.wpe(torch.arange(t, device=idx.device)))
        for block in tr.h:
            x = block(x)
        return self.lm_head(tr.ln_f(x))


# --------------------------------------------------------------------- tasks
def _windows(tokens: np.ndarray, context: int) -> np.ndarray:
    n = len(tokens) // context
    return tokens[: n * context].reshape(n, context)  # a view: no copy of a memmap


class NinoLMTask(Task):
    """Base of NiNo's GPT-2 tasks: subclasses set the shape, corpus and target."""

    n_embd: ClassVar[int] = 24
    n_layer: ClassVar[int] = 3
    n_head: ClassVar[int] = 3
    nino_name: ClassVar[str] = ""
    target_perplexity: ClassVar[float] = 0.0
    epochs: ClassVar[int] = 1
    learning_rate: ClassVar[float] = 2e-4
    weight_decay: ClassVar[float] = 0.01
    batch_size: ClassVar[int] = 32
    architecture = "gpt2-l{n_layer}-d{n_embd}-h{n_head}-ctx{context}"
    default_params: ClassVar[dict[str, Any]] = {
        "data_dir": "",
        "corpus": "lm1b",
        "context": 1024,
        "n_positions": 1024,
        "dropout": 0.1,
    }
    val_acc_meaning = "next-token accuracy over every scored position of the held-out blocks"

    def validate_params(self) -> None:
        p = self.params
        if not 2 <= p["context"] <= p["n_positions"]:
            raise TrajbenchError(
                f"task '{self.name}': context must be in [2, n_positions={p['n_positions']}], but got {p['context']!r}"
            )
        if not 0.0 <= p["dropout"] < 1.0:
            raise TrajbenchError(
                f"task '{self.name}': dropout must be in [0, 1), but got {p['dropout']!r}"
            )

    @property
    def corpus(self) -> TokenCorpus:
        """The tokenised corpus: ``<data_dir>/<corpus>/``."""
        name = self.params["corpus"]
        root = resolve_data_dir(self.params["data_dir"] or None, f"the tokenised corpus '{name}'")
        return load_token_corpus(root / name)

    def check_data(self) -> None:
        """Check that the corpus folder holds ``meta.json`` and train/val tokens, without
        reading the tokens (``trajbench generate`` calls this before any work)."""
        name = self.params["corpus"]
        root = resolve_data_dir(self.params["data_dir"] or None, f"the tokenised corpus '{name}'")
        folder = root / name
        missing = [
            f
            for f, alt in ((META_FILE, None), ("train.bin", "train.npy"), ("val.bin", "val.npy"))
            if not (folder / f).is_file() and not (alt and (folder / alt).is_file())
        ]
        if missing:
            raise TrajbenchError(
                f"no tokenised corpus in '{folder}': missing {', '.join(missing)} (expected"
                f' {META_FILE} ({{"vocab_size": N, "dtype": "uint16"}}) with train.bin and'
                " val.bin or .npy beside it; see docs/datasets.md; trajbench never downloads data)"
            )

    def load_split(self) -> Split:
        corpus = self.corpus
        c = self.params["context"]
        train, val = _windows(corpus.train, c), _windows(corpus.val, c)
        if len(train) < 1 or len(val) < 1:
            raise TrajbenchError(
                f"task '{self.name}': corpus '{corpus.directory}' has {len(corpus.train)} train and"
                f" {len(corpus.val)} val tokens; expected at least one block of {c} in each"
            )
        description = (
            f"tokens of {corpus.directory} in blocks of {c} (train {len(train)}, val {len(val)});"
            f" vocab {corpus.vocab_size}"
        )
        # y is x: the loss shifts by one inside each block, as Hugging Face's does.
        return Split(train, train, val, val, corpus.fingerprint, description)

    @property
    def architecture_id(self) -> str:
        # No vocabulary here: describing a task must not read its data (info() has it).
        return self.architecture.format(
            n_layer=self.n_layer,
            n_embd=self.n_embd,
            n_head=self.n_head,
            context=self.params["context"],
        )

    def make_model(self) -> nn.Module:
        p = self.params
        return GPT2(
            self.corpus.vocab_size,
            p["n_positions"],
            self.n_embd,
            self.n_layer,
            self.n_head,
            p["dropout"],
        )

    # Batches are gathered from the memory-mapped blocks: a corpus is never copied whole.
    def train_batches(self, batch_size: int, *, seed: int, epoch: int) -> Any:
        steps = self.steps_per_epoch(batch_size)
        blocks = self.split.x_train
        generator = torch.Generator().manual_seed(mix_seed(seed, epoch, 0x5EED))
        order = torch.randperm(len(blocks), generator=generator).numpy()
        for i in range(steps):
            idx = np.sort(order[i * batch_size : (i + 1) * batch_size])
            x = torch.from_numpy(blocks[idx].astype(np.int64))
            yield x, x

    def val_batches(self, batch_size: int = 32) -> Any:
        blocks = self.split.x_val
        for i in range(0, len(blocks), batch_size):
            x = torch.from_numpy(np.asarray(blocks[i : i + batch_size], dtype=np.int64))
            yield x, x

    def _data(self) -> tuple[torch.Tensor, ...]:
        if self._tensors is None:
            s = self.split
            train = torch.from_numpy(np.asarray(s.x_train, dtype=np.int64))
            val = torch.from_numpy(np.asarray(s.x_val, dtype=np.int64))
            self._tensors = (train, train, val, val)
        return self._tensors

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        x, _ = batch
        logits = model(x)
        return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))

    def eval_batch(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[float, float, int]:
        x = x.to(next(model.parameters()).device)  # follow the model (``--device cuda``)
        logits = model(x)[:, :-1]
        flat = logits.reshape(-1, logits.shape[-1])
        target = x[:, 1:].reshape(-1)
        loss_sum = float(F.cross_entropy(flat, target, reduction="sum"))
        correct = float((flat.argmax(dim=-1) == target).sum())
        return loss_sum, correct, int(target.numel())

    def train_step(self, model: nn.Module, batch: Batch, optimizer: torch.optim.Optimizer) -> float:
        """One step; the dropout masks are drawn from a generator seeded by the batch's
        tokens, so a run is reproducible whatever the caller's global RNG state."""
        seed = zlib.crc32(batch[0].detach().cpu().numpy().tobytes())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return super().train_step(model, batch, optimizer)

    @property
    def recipe(self) -> dict[str, Any]:
        """NiNo's recipe: optimizer config, batch size, epochs and target perplexity."""
        return {
            "optimizer": {
                "name": "adamw",
                "lr": self.learning_rate,
                "weight_decay": self.weight_decay,
            },
            "schedule": "constant",
            "batch_size": self.batch_size,
            "epochs": self.epochs,
            "target_val_perplexity": self.target_perplexity,
            "nino_task": self.nino_name,
            "source": "github.com/SamsungSAILMontreal/nino@84fb0cf utils/lm.py, train_lm.py",
        }

    def make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """AdamW at NiNo's lr and weight decay. NiNo exempts parameters whose names hold
        ``bias`` or ``layer_norm.weight`` from decay; GPT-2's LayerNorms are named ``ln_*``,
        so only the biases are exempt there, and here."""
        decay = [p for n, p in model.named_parameters() if "bias" not in n]
        no_decay = [p for n, p in model.named_parameters() if "bias" in n]
        return torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": self.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=self.learning_rate,
        )

    @staticmethod
    def perplexity(metrics: dict[str, float]) -> float:
        """``exp(val_loss)``: NiNo's target metric."""
        if "val_loss" not in metrics:
            raise TrajbenchError(f"metrics must hold 'val_loss', but got keys {sorted(metrics)}")
        return math.exp(metrics["val_loss"]) if metrics["val_loss"] < 700 else math.inf

    def reached_target(self, metrics: dict[str, float]) -> bool:
        """Whether the validation perplexity is at or below NiNo's target."""
        return self.perplexity(metrics) <= self.target_perplexity

    def info(self) -> dict[str, Any]:
        info = super().info()
        info["vocab_size"] = self.corpus.vocab_size
        info["recipe"] = self.recipe
        return info


@register_task
class NinoLM1B3x24(NinoLMTask):
    name = "nino-lm1b-3-24"
    description = (
        "NiNo's LM1B-3-24: GPT-2 (3 layers, width 24, 3 heads) on the user's tokenised LM1B."
    )
    nino_name = "LM1B-3-24"
    n_embd, n_layer, n_head = 24, 3, 3
    target_perplexity = 352.0


@register_task
class NinoLM1B2x32(NinoLMTask):
    name = "nino-lm1b-2-32"
    description = (
        "NiNo's LM1B-2-32: GPT-2 (2 layers, width 32, 2 heads) on the user's tokenised LM1B."
    )
    nino_name = "LM1B-2-32"
    n_embd, n_layer, n_head = 32, 2, 2
    target_perplexity = 319.0


@register_task
class NinoWiki3x64(NinoLMTask):
    name = "nino-wiki-3-64"
    description = "NiNo's WIKI-3-64: GPT-2 (3 layers, width 64, 4 heads) on the user's tokenised WikiText-103."
    nino_name = "WIKI-3-64"
    n_embd, n_layer, n_head = 64, 3, 4
    epochs = 4
    target_perplexity = 147.0
    default_params: ClassVar[dict[str, Any]] = {
        **NinoLMTask.default_params,
        "corpus": "wikitext-103",
    }
