"""What a trained lesson model is, written beside its weights, so that ``wideann predict`` can use it.

A lesson's model is its own class (``MLP`` in lessons 2-4, an ``nn.Sequential`` in lesson 1), which the
package cannot import. What it can do is describe the model's layers and rebuild the same network:

- :func:`describe` lists the model's leaf modules in order (``Linear`` sizes, ``LayerNorm`` and
  ``Dropout`` settings, the activation) with their names in the model's ``state_dict``; it refuses a
  layer type it cannot rebuild.
- :func:`build` makes an ``nn.Sequential`` of those layers, and :func:`load_weights` loads the
  lesson's ``state_dict`` into it (``net.0.weight`` -> ``0.weight``), with ``weights_only=True``.
- :func:`write` saves the card, ``model.json`` in the run folder, after checking on a few rows that
  the rebuilt network computes what the lesson's model computes (so a model whose ``forward`` is not
  "the layers in order" is caught when it is saved, not turned into wrong predictions later).

The card (JSON): ``format`` ("wideann-model"), ``version``, ``weights`` (file name beside the card),
``stats`` (the training stats, copied beside the card), ``table_dtype`` (of the training table),
``n_inputs``, ``target``, ``inputs`` (what the model's ``forward`` does to the inputs before the first
layer: ``"as_is"``, or ``"centered"`` for ``2 x - 1``, lesson 4's [0, 1] -> [-1, 1]; found by the check
below), ``layers`` (or null with ``not_rebuildable`` saying why), ``lesson`` and ``options`` (the lesson's
command-line options; a file name among them that is not UTF-8 is readable text, its exact bytes in
``lesson_bytes`` / ``option_bytes``: :mod:`wideann._exact_names`), and ``sha256`` (of the weights and stats
files as written: :func:`read` refuses a run folder whose files are not the ones its card was written with --
a run stopped between writing the weights and the card, or a file copied in from another run; and, as
``"card"``, of the card's own fields: a card edited by hand, say ``ReLU`` made ``GELU``, would rebuild a network
that was never trained). A card without them (written before 2026-11-27) is read, and ``wideann predict`` warns
what it could not check (:func:`unchecked`).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ._atomic import atomic_path
from ._exact_names import exact_fields, spell_fields

FORMAT = "wideann-model"
VERSION = 1
CARD_NAME = "model.json"
STATS_NAME = "stats.json"
EXACT_NAMES = {"options": "option_bytes", "lesson": "lesson_bytes"}
"""The card's fields that may hold file names, and the fields of their exact bytes when one is not UTF-8
(:mod:`wideann._exact_names`: written only then; :func:`read` gives the names back exactly)."""

# layer type -> the constructor arguments that define it (read from the module's attributes)
_LAYERS = {
    "Linear": ("in_features", "out_features", "bias"),
    "LayerNorm": ("normalized_shape", "eps", "elementwise_affine", "bias"),
    "BatchNorm1d": ("num_features", "eps", "momentum", "affine", "track_running_stats"),
    "Dropout": ("p",),
    "ReLU": (),
    "LeakyReLU": ("negative_slope",),
    "GELU": ("approximate",),
    "SiLU": (),
    "ELU": ("alpha",),
    "Tanh": (),
    "Sigmoid": (),
    "Identity": (),
}


def _arg(module, name):
    value = getattr(module, name)
    if name == "bias":  # Linear / LayerNorm keep the bias tensor (or None), the constructor a flag
        return value is not None
    if isinstance(value, tuple):
        return list(value)
    return value


def describe(model) -> list[dict]:
    """The model's leaf modules in order, as ``{"type", "name", <constructor arguments>}`` dicts.

    Raises ``ValueError`` for a layer type :func:`build` cannot make.
    """
    layers = []
    for name, module in model.named_modules():
        if any(True for _ in module.children()):
            continue  # a container: its leaves follow
        kind = type(module).__name__
        if kind not in _LAYERS or type(module).__module__.split(".")[:2] != ["torch", "nn"]:
            raise ValueError(f"layer {name or kind} ({kind}) is not one wideann predict can rebuild "
                             f"(it knows {', '.join(_LAYERS)})")
        layers.append({"type": kind, "name": name, **{a: _arg(module, a) for a in _LAYERS[kind]}})
    if not layers:
        raise ValueError("the model has no layers")
    return layers


INPUTS = {"as_is": (1.0, 0.0), "centered": (2.0, -1.0)}
"""What a model's ``forward`` may do to its inputs before the first layer: ``x * scale + shift``."""


def build(layers: list[dict], inputs: str = "as_is"):
    """An ``nn.Sequential`` of the described layers (fresh weights), after the ``inputs`` transform (a
    layer without weights, so the ``state_dict`` keys are the layers' own)."""
    from torch import nn

    modules = []
    for layer in layers:
        kind = layer["type"]
        if kind not in _LAYERS:
            raise ValueError(f"unknown layer type {kind!r}")
        kwargs = {a: layer[a] for a in _LAYERS[kind]}
        if kind == "LayerNorm" and isinstance(kwargs["normalized_shape"], list):
            kwargs["normalized_shape"] = tuple(kwargs["normalized_shape"])
        modules.append(getattr(nn, kind)(**kwargs))
    if inputs not in INPUTS:
        raise ValueError(f"unknown inputs transform {inputs!r}")
    seq = nn.Sequential(*modules)
    if inputs != "as_is":
        scale, shift = INPUTS[inputs]
        seq.register_forward_pre_hook(lambda _module, args: (args[0] * scale + shift,))
    return seq


def _renamed(state: dict, layers: list[dict]) -> dict:
    """The lesson's ``state_dict`` keys (``net.3.weight``) as the rebuilt Sequential's (``1.weight``)."""
    index = {layer["name"]: str(i) for i, layer in enumerate(layers)}
    out = {}
    for key, value in state.items():
        owner, _, param = key.rpartition(".")
        if owner not in index:
            raise ValueError(f"weight {key!r} belongs to no layer of the model description")
        out[f"{index[owner]}.{param}"] = value
    return out


def load_weights(seq, layers: list[dict], state: dict) -> None:
    """Load a lesson's ``state_dict`` into the rebuilt ``seq`` (every weight must match)."""
    result = seq.load_state_dict(_renamed(state, layers), strict=False)
    missing = [k for k in result.missing_keys]
    if missing or result.unexpected_keys:
        raise ValueError(f"weights do not match the model description (missing: {missing[:3]}, "
                         f"unexpected: {list(result.unexpected_keys)[:3]})")


def _check_rebuild(model, layers: list[dict], n_inputs: int) -> str:
    """The rebuilt network gives the lesson model's outputs on a few rows, with one of the :data:`INPUTS`
    transforms: returns it (raises ValueError if none does).

    The rebuilt layers take the model's own tensors (no copy: a large model is not duplicated in memory)
    and run on its device.
    """
    import torch

    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    rows = torch.rand(8, n_inputs, generator=torch.Generator().manual_seed(0)).to(device)  # not the global RNG
    was_training = model.training
    forward = getattr(model, "_original_forward", model)  # without accelerate's mixed-precision wrapper
    model.eval()
    try:
        with torch.no_grad():
            want = forward(rows).float()
            for inputs in INPUTS:
                with torch.device("meta"):
                    seq = build(layers, inputs)
                result = seq.load_state_dict(_renamed(model.state_dict(), layers), strict=False, assign=True)
                if result.missing_keys or result.unexpected_keys:
                    raise ValueError("the model's weights do not match its layers")
                got = seq.eval()(rows).float()
                if want.shape == got.shape and torch.allclose(got, want, rtol=1e-5,
                                                              atol=1e-6 * (1 + float(want.abs().max()))):
                    return inputs
    finally:
        model.train(was_training)
    raise ValueError("the model's forward is not its layers applied in order (to its inputs as they are, or "
                     "centered)")


def _jsonable(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def table_dtype(train) -> str:
    """The dtype of the training table (a ``.npy`` path or a list of shards), for normalizing new data
    the same way (``wideann predict``, and a lesson's raw test CSV); float32 when it cannot be read."""
    first = train[0] if isinstance(train, (list, tuple)) and train else train
    try:
        from .data import NpyTable

        with NpyTable(first) as t:
            return t.dtype.name
    except Exception:
        return "float32"


def write(model, folder, weights_name: str, *, stats_path, train=None, options=None, lesson=None) -> dict:
    """Write ``folder/model.json`` for ``model`` (whose weights are ``folder/weights_name``) and copy the
    training stats to ``folder/stats.json``. Returns the card.

    When the model cannot be rebuilt (a layer type or a ``forward`` that :func:`build` does not
    reproduce), the card says why in ``not_rebuildable`` and ``wideann predict`` refuses the run.
    """
    from .stats import Stats

    folder = Path(folder)
    stats = Stats.load(stats_path)  # checked: a stats file
    n_inputs = stats.n_columns - 1
    card = {"format": FORMAT, "version": VERSION, "weights": weights_name, "stats": STATS_NAME,
            "table_dtype": table_dtype(train) if train is not None else "float32",
            "n_inputs": n_inputs, "target": stats.columns[-1]}
    try:
        layers = describe(model)
        card["inputs"] = _check_rebuild(model, layers, n_inputs)
        card["layers"] = layers
    except ValueError as e:
        card["layers"], card["not_rebuildable"] = None, str(e)
    card["lesson"] = lesson
    card["options"] = _jsonable(dict(options or {}))
    card = spell_fields(card, EXACT_NAMES)  # (a file name that is not UTF-8: readable, its bytes beside it)

    stats_copy, text = folder / STATS_NAME, Path(stats_path).read_bytes()
    if not (stats_copy.is_file() and stats_copy.read_bytes() == text):  # written once per run, not per save
        with atomic_path(stats_copy) as tmp:
            Path(tmp).write_bytes(text)
    card["sha256"] = {key: _sha256(folder / card[key]) for key in ("weights", "stats")
                      if (folder / card[key]).is_file()}
    card["sha256"]["card"] = _card_sha256(card)
    with atomic_path(folder / CARD_NAME) as tmp:
        with open(tmp, "w") as f:
            json.dump(card, f, indent=1)
            f.write("\n")
    return card


def read(run_dir) -> dict:
    """The card of a run folder, checked; raises ``FileNotFoundError`` / ``ValueError`` with one line."""
    run_dir = Path(run_dir)
    path = run_dir / CARD_NAME
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run folder")
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: not a lesson run folder (no {CARD_NAME}; a lesson writes it "
                                "with its model)")
    try:
        card = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a valid model card ({e})") from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise ValueError(f"{path}: not a wideann model card")
    if card.get("version") != VERSION:
        raise ValueError(f"{path}: model card version {card.get('version')} (this wideann reads {VERSION})")
    digests = card.get("sha256")
    if isinstance(digests, dict) and "card" in digests and digests["card"] != _card_sha256(card):
        raise ValueError(f"{path}: edited since the lesson wrote it (the SHA-256 of its fields differs from the one "
                         "it records): edited layers or inputs would rebuild a network that was never trained; "
                         "restore the card, or run the lesson again")
    if not card.get("layers"):
        raise ValueError(f"{path}: this model cannot be rebuilt by wideann predict: "
                         f"{card.get('not_rebuildable', 'no layers described')}")
    _check_fields(path, card)
    try:
        card = exact_fields(card, EXACT_NAMES)  # (after the digest of the fields as written)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    for key in ("weights", "stats"):
        if not (run_dir / card[key]).is_file():
            raise FileNotFoundError(f"{run_dir / card[key]}: missing ({CARD_NAME} names it)")
    for key, digest in (digests if isinstance(digests, dict) else {}).items():  # (cards before 2026-11-27: none)
        if key in ("weights", "stats") and _sha256(run_dir / card[key]) != digest:
            raise ValueError(f"{run_dir / card[key]}: not the file {CARD_NAME} was written with (its SHA-256 "
                             "differs): the run was stopped between writing its model and its card, or a file was "
                             "replaced; run the lesson again (lessons 3-4: --resume continues it), or keep a run's "
                             "files together")
    return card


def unchecked(run_dir, card: dict) -> str | None:
    """What :func:`read` could not check because the card records no SHA-256 of it (a card written before
    2026-11-27, or one whose digests were removed), as a warning line; None for a card that records them all.

    Such a card is read, not refused: a run of hours written by an earlier wideann stays usable, and
    nothing in the card tells an old card from one whose digests were deleted. But it is said, once the
    predictions are written: its weights may be another model's (a run stopped between writing its weights
    and its card), or its fields edited, and the predictions would then be wrong numbers without a word."""
    digests = card.get("sha256") if isinstance(card.get("sha256"), dict) else {}
    missing = [card[k] if k in ("weights", "stats") else CARD_NAME for k in ("weights", "stats", "card")
               if k not in digests]
    if not missing:
        return None
    folder = Path(run_dir)
    return (f"{folder / CARD_NAME} records no SHA-256 of {' and '.join(missing)} (a card written before "
            "2026-11-27, or its digests removed): not checked to be the files and fields the lesson wrote; if "
            "in doubt, run the lesson again (its card records them)")


def _card_sha256(card: dict) -> str:
    """The SHA-256 of a card's fields, its own digest left out (the same for the card as written and as read
    back: canonical JSON, keys sorted)."""
    fields = {k: v for k, v in card.items() if k != "sha256"}
    fields["sha256"] = {k: v for k, v in (card.get("sha256") or {}).items() if k != "card"}
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_fields(path: Path, card: dict) -> None:
    """The fields :func:`build` and ``wideann predict`` use have the types the lessons write (an edited or
    damaged card is said in one line, not met as a traceback)."""
    def bad(what: str):
        raise ValueError(f"{path}: {what}")

    for key in ("weights", "stats", "target"):
        if not isinstance(card.get(key), str) or not card[key]:
            bad(f"{key!r} must be a file name" if key != "target" else "'target' must be the target column's name")
    if not isinstance(card.get("n_inputs"), int) or isinstance(card["n_inputs"], bool) or card["n_inputs"] < 1:
        bad("'n_inputs' must be a whole number of at least 1")
    inputs = card.get("inputs", "as_is")
    if not isinstance(inputs, str) or inputs not in INPUTS:
        bad(f"'inputs' must be one of {', '.join(map(repr, INPUTS))}")
    if not isinstance(card["layers"], list):
        bad("'layers' must be a list of layers")
    for i, layer in enumerate(card["layers"]):
        if not (isinstance(layer, dict) and isinstance(layer.get("type"), str)
                and isinstance(layer.get("name"), str)):
            bad(f"layer {i + 1}: must have a 'type' and a 'name'")
        for arg in _LAYERS.get(layer["type"], ()):
            if arg not in layer:
                bad(f"layer {i + 1} ({layer['type']}): no {arg!r}")
