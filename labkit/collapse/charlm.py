r"""Model collapse of a character-level causal transformer on real English prose (Gerstgrasser, Schaeffer et al.
2024, arXiv 2404.01413, Sec. 4: language models on TinyStories), run through the shared loop of ``generations``:
notebook 01b's experiment, its configuration and :func:`run`. The model is :mod:`labkit.collapse.charlm_model`, its
training and sampling :mod:`labkit.collapse.charlm_train`.

*Recipe* (fixed for every generation; nanoGPT's ``train_shakespeare_char``, :class:`~labkit.collapse.charlm_train.
TrainRecipe`): a fresh initialisation per model, and a fixed number of *epochs* over whatever training set the regime
gives — the paper trains each iteration for one epoch over its data — so an accumulating model takes more steps, as in
the paper.

*Data.* The real training text is cut into consecutive chunks of ``block_size + 1`` characters, an int array of
shape ``(n_chunks, block_size + 1)``. A synthetic set has as many chunks, each sampled from the previous model at
temperature :math:`\tau` (the paper uses 1.0, with a 0.3 ablation) from a seed character drawn uniformly from the real
chunks' first characters. Every model is evaluated on the held-out real tail of the text, cut into non-overlapping
windows of the training shape.

*Competence* (checked before collapse is claimed; thresholds fixed in the notebook before any run). A collapse
measured on models that never learned the text is weak evidence, so generation 1 is held to two external anchors:
its held-out loss against nanoGPT's ``train_shakespeare_char`` recipe (≈ 1.93 nats/char on this corpus, see
``benchmarks/bench_charlm.py``; the notebook asks for ≤ 2.00), and whether it writes words. A *word token* is a
maximal match of ``[a-z]+(?:'[a-z]+)*`` in the lower-cased text (letters with internal apostrophes: ``o'er``,
``'tis`` → ``tis``); :func:`vocabulary` is the set of word tokens of a text and :func:`real_word_fraction` the
fraction of a text's word tokens found in a vocabulary. Applied to chunks (the synthetic set's unit), tokens that
touch either end of a chunk are left out, as they may be cut by the chunk boundary; the control is the held-out real
text cut into chunks of the same length (:meth:`CharLMExperiment.real_word_reference`).
"""

import math
import re
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from labkit import execution
from labkit.collapse import generations
from labkit.collapse.charlm_model import CharLMConfig, CharTransformer
from labkit.collapse.charlm_train import TrainRecipe, Vocabulary, chunks, evaluate, generate, iters_for_epochs, train
from labkit.collapse.config import GenerationsConfig
from labkit.collapse.generations import Family
from labkit.config import Check, ConfigError, param, positive_float, positive_int
from labkit.data import text as text_data

__all__ = [
    "COMPETENT_LOSS",
    "COMPETENT_WORD_FRACTION",
    "WORD",
    "words",
    "vocabulary",
    "real_word_fraction",
    "HELD_OUT_PLAY",
    "CharLMExperiment",
    "sample_previews",
    "CharLMCollapseConfig",
    "run",
]

#: competence of a generation-1 model, fixed before any run (see the module docstring): held-out loss at most
#: this (nats/char; nanoGPT's char recipe reaches ≈ 1.93 on this corpus) ...
COMPETENT_LOSS = 2.00


#: ... and at least this fraction of its samples' word tokens are words of the training text
COMPETENT_WORD_FRACTION = 0.70


#: a word token: a maximal run of lower-case letters, with apostrophes only between letters
WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")


def words(text: str, interior: bool = False) -> list[str]:
    """The word tokens (:data:`WORD`) of ``text`` lower-cased; with ``interior``, only those touching neither end of
    ``text`` (a chunk boundary may have cut those)."""
    low = text.lower()
    return [m.group() for m in WORD.finditer(low) if not interior or (m.start() > 0 and m.end() < len(low))]


def vocabulary(text: str) -> frozenset[str]:
    """The distinct word tokens of ``text`` (lower-cased)."""
    return frozenset(words(text))


def real_word_fraction(text, vocabulary: frozenset[str]) -> float:
    """Fraction of the word tokens of ``text`` that are in ``vocabulary``. ``text`` is a string, or a list of chunks
    (strings) whose tokens touching either end of their chunk are left out (:func:`words` with ``interior``).
    0.0 when there is no word token at all (no words is no evidence of writing words)."""
    tokens = words(text) if isinstance(text, str) else [w for piece in text for w in words(piece, interior=True)]
    return sum(w in vocabulary for w in tokens) / len(tokens) if tokens else 0.0


#: the held-out play: the last play in file-name order (the classic split holds out the tail of the text)
HELD_OUT_PLAY = "winters_tale"


@dataclass(frozen=True)
class CharLMExperiment:
    """The character-LM family on real Shakespeare (``labkit.data.text.shakespeare_plays``): training text = the plays
    other than :data:`HELD_OUT_PLAY` in file-name order, as many whole plays as fit in ``train_chars`` (the opening
    ``train_chars`` of the first play when not even one fits: the smoke and quick previews); held-out text = the first
    ``held_out_chars`` of :data:`HELD_OUT_PLAY` (the whole play when it is shorter). The model ``model``, the recipe
    ``recipe`` run for ``epochs`` over each training set, synthetic chunks drawn at ``temperature``, sampled in
    batches of ``sample_batch`` chunks; the last generation's synthetic set, which only feeds the preview, has
    ``last_sample_chunks`` chunks. ``build()`` is what ``generations.run_all`` calls."""

    model: CharLMConfig = CharLMConfig()
    recipe: TrainRecipe = TrainRecipe()
    epochs: float = 1.0
    train_chars: int = 1_000_000
    held_out_chars: int = 200_000
    temperature: float = 1.0
    sample_batch: int = 512
    preview_chars: int = 300
    last_sample_chunks: int = 2000

    def text(self) -> tuple[str, str]:
        """``(train_text, held_out_text)`` of the real corpus: disjoint plays."""
        training_plays = [name for name in text_data.shakespeare_plays() if name != HELD_OUT_PLAY]
        return (
            text_data.play_corpus(training_plays, self.train_chars),
            text_data.play_corpus([HELD_OUT_PLAY], self.held_out_chars),
        )

    def n_params(self) -> int:
        """Parameters of the model on this corpus's vocabulary."""
        return CharTransformer(self.model, len(Vocabulary("".join(self.text())))).n_params()

    def fit(self, vocab_size: int, train_set: np.ndarray, seed: int) -> CharTransformer:
        device = execution.device()
        g = torch.Generator().manual_seed(seed)
        model = CharTransformer(self.model, vocab_size, generator=g).to(device)
        n_targets = train_set.shape[0] * (train_set.shape[1] - 1)
        iters = iters_for_epochs(n_targets, self.epochs, self.recipe.batch_size, self.model.block_size)
        train(model, train_set, iters, self.recipe, seed)
        return model

    def sample(self, model: CharTransformer, like: np.ndarray, seed: int) -> np.ndarray:
        """As many chunks as ``like`` has, each from a seed character drawn among ``like``'s first characters."""
        device = next(model.parameters()).device
        g = torch.Generator(device=device).manual_seed(seed)
        first = torch.as_tensor(like[:, 0], device=device)
        start = first[torch.randint(len(first), (len(first),), generator=g, device=device)]
        parts = [
            generate(model, start[i : i + self.sample_batch], like.shape[1], self.temperature, g)
            for i in range(0, len(start), self.sample_batch)
        ]
        return torch.cat(parts).cpu().numpy()

    def evaluate(self, model: CharTransformer, held_out: np.ndarray) -> dict[str, float]:
        loss = evaluate(model, held_out)
        return {"loss": loss, "bits_per_char": loss / math.log(2)}

    def preview(self, vocab: Vocabulary, words_known: frozenset[str], data: np.ndarray) -> dict:
        """``text``: the first ``preview_chars`` characters of a synthetic set; ``real_word_fraction``: the fraction
        of the word tokens of all its chunks (interior tokens, see :func:`real_word_fraction`) that occur in the
        training text."""
        rows = math.ceil(self.preview_chars / data.shape[1])
        return {
            "text": vocab.decode(data[:rows])[: self.preview_chars],
            "real_word_fraction": real_word_fraction([vocab.decode(row) for row in data], words_known),
        }

    def real_word_reference(self) -> float:
        """The control of ``real_word_fraction``: the held-out real text, cut into chunks of the synthetic chunks'
        length, scored against the training text's vocabulary (1.0 would be a held-out text using only words of the
        training text)."""
        train_text, held_text = self.text()
        size = self.model.block_size + 1
        pieces = [held_text[i : i + size] for i in range(0, len(held_text) - size + 1, size)]
        return real_word_fraction(pieces, vocabulary(train_text))

    def build(self) -> tuple[Family, np.ndarray, np.ndarray]:
        train_text, held_text = self.text()
        vocab = Vocabulary(train_text + held_text)
        known = vocabulary(train_text)
        real = chunks(vocab.encode(train_text), self.model.block_size + 1)
        family = Family(
            fit=lambda train_set, seed: self.fit(len(vocab), train_set, seed),
            sample=self.sample,
            evaluate=self.evaluate,
            preview=lambda data: self.preview(vocab, known, data),
            last_sample_size=self.last_sample_chunks,
        )
        return family, real, vocab.encode(held_text)


def sample_previews(results: list[dict], seed: int, generation: int) -> dict[str, str]:
    """``{regime: preview text}`` of the synthetic set of model ``generation`` in one seed's runs (``run_all``
    results)."""
    return {
        res["regime"]: res["generations"][generation - 1]["preview"]["text"] for res in results if res["seed"] == seed
    }


def _is_size(v) -> bool:
    return isinstance(v, (tuple, list)) and len(v) == 3 and all(positive_int.test(x) for x in v) and v[2] % v[1] == 0


_SIZES = Check(
    lambda v: isinstance(v, (tuple, list)) and len(v) >= 1 and all(_is_size(s) for s in v),
    "a list of (n_layer, n_head, n_embd) triples of integers >= 1 with n_embd a multiple of n_head",
)


@dataclass(frozen=True)
class CharLMCollapseConfig(GenerationsConfig):
    """Notebook 01b: one run per model size, regime and seed (the fields are described where they are declared).

    Scales. The training text is whole plays in file-name order and the held-out text is :data:`HELD_OUT_PLAY`
    (see :class:`CharLMExperiment`; the previews cut both short):

    - ``smoke`` seconds: 2 seeds, 2 generations, a one-layer model on 24 k characters.
    - ``quick`` a preview: 3 seeds, 4 generations, models of 0.06 M and 0.16 M parameters,
      the opening 45 k characters of the first play to train and 15 k of the held-out play, 3 epochs per generation,
      batches of 8 at learning rate 4e-3 → 4e-4. Its generation-1 models are not competent (≈ 2.4 nats/char).
    - ``full`` the committed figures: 3 seeds, 4 generations, models of 0.11 M
      (2 layers × 4 heads × 64) and 0.81 M parameters (4 × 4 × 128, nanoGPT's ``train_shakespeare_char`` model),
      block 64; the first seven plays whole (0.94 M characters) to train and *The Winter's Tale* whole (0.15 M) held
      out; 1.5 epochs over each generation's training set (the paper's one epoch, scaled to where this model is
      competent: one epoch reaches ≈ 1.99 nats/char, 1.5 ≈ 1.91); batches of 8 at learning rate 3e-3 → 3e-4.
      Epochs, batch and learning rate were chosen on *Henry IV Part 1* (a play in neither split) before any
      collapse run at this scale: 1 epoch at 1e-3 / 2e-3 / 3e-3 with batches of 12 gave 2.13 / 2.05 / 2.01, with
      batches of 8 at 2e-3 / 3e-3 1.997 / 1.988, and 1.5 epochs at 3e-3 with batches of 8 1.910.
    - ``paper``, for a GPU (sizes comparable to the paper's, which trains GPT-2 9 M and Llama-2 12 M–126 M for one
      epoch per iteration on TinyStories, ~470 M tokens, 8 k-token vocabulary, 5 iterations): all 36 training plays
      (4.70 M characters), block 256, two models of 10.7 M (6 layers × 6 heads × 384, nanoGPT's Shakespeare model,
      ≈ the paper's 9 M GPT-2) and 25.3 M parameters (8 × 8 × 512), batches of 64 windows, 5 epochs per generation,
      5 generations, 3 seeds, temperature 1.0 (``params={"temperature": 0.3}`` is the paper's ablation).
      Characters are not BPE tokens, so losses are in nats per character, not per token.
    """

    model_sizes: tuple = param(((2, 2, 48), (3, 4, 64)), _SIZES)  # (n_layer, n_head, n_embd), each run
    block_size: int = param(64, positive_int)  # context of every model, in characters
    train_chars: int = param(45_000, positive_int)  # real training text (whole plays when they fit)
    held_out_chars: int = param(15_000, positive_int)  # held-out real text (of HELD_OUT_PLAY)
    epochs: float = param(3.0, positive_float)  # passes over each generation's training set
    recipe: TrainRecipe = param(TrainRecipe(batch_size=8, learning_rate=4e-3, min_lr=4e-4))  # the optimiser's
    temperature: float = param(1.0, positive_float)  # sampling temperature of the synthetic sets

    SCALES: ClassVar[dict] = {
        "smoke": dict(
            n_generations=2,
            seeds=(0, 1),
            model_sizes=((1, 2, 32),),
            block_size=32,
            train_chars=24_000,
            held_out_chars=6_000,
            epochs=1.0,
        ),
        "quick": {},
        "full": dict(
            model_sizes=((2, 4, 64), (4, 4, 128)),
            train_chars=1_000_000,
            held_out_chars=200_000,
            epochs=1.5,
            recipe=dict(learning_rate=3e-3, min_lr=3e-4),
        ),
        "paper": dict(
            n_generations=5,
            model_sizes=((6, 6, 384), (8, 8, 512)),
            block_size=256,
            train_chars=5_000_000,
            held_out_chars=200_000,
            epochs=5.0,
            recipe=dict(batch_size=64, learning_rate=1e-3, min_lr=1e-4),
        ),
    }

    def validate(self) -> None:
        super().validate()
        if self.held_out_chars < 4 * (self.block_size + 1):
            raise ConfigError(
                f"CharLMCollapseConfig: bad value for 'held_out_chars': {self.held_out_chars!r}; "
                f"allowed: at least 4 windows of block_size + 1 = {self.block_size + 1}"
            )

    def experiments(self) -> dict[str, CharLMExperiment]:
        """``{model name: experiment}``, one per model size, sharing data and recipe."""
        out = {}
        for n_layer, n_head, n_embd in self.model_sizes:
            model = CharLMConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=self.block_size)
            out[model.name] = CharLMExperiment(
                model=model,
                recipe=self.recipe,
                epochs=self.epochs,
                train_chars=self.train_chars,
                held_out_chars=self.held_out_chars,
                temperature=self.temperature,
            )
        return out


def run(cfg: CharLMCollapseConfig) -> dict[str, generations.Runs]:
    """Every model size through every regime and seed: ``{"<size> (<n> M parameters)": runs}``, in the order of
    ``cfg.model_sizes``."""
    return {
        f"{name} ({exp.n_params() / 1e6:.2f} M parameters)": generations.run(exp, cfg)
        for name, exp in cfg.experiments().items()
    }
