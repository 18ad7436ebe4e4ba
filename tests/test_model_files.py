"""Model files and configurations: every bad value is one clear error, nothing is guessed.

A model file is data from elsewhere: loading it must neither accept values that make the
model compute garbage (NaN weights, a negative norm epsilon) nor commit the caller to work the
file alone decides (a huge ``max_len`` in a tiny file).
"""

from __future__ import annotations

import io
import json
import time
import tracemalloc
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from futurefill import memory
from futurefill.models import ConvLM, ModelConfig
from futurefill.models.params import init_params, model_bytes


def tiny(mixer: str = "stu", **kw: object) -> ConvLM:
    args = {"dim": 4, "layers": 1, "vocab_size": 8, "stu_k": 4, "max_len": 16, "mlp_ratio": 2.0}
    args.update(kw)
    return ConvLM(mixer=mixer, **args)


def write_file(path: Path, config: object, params: dict[str, np.ndarray]) -> Path:
    """A model file with any ``__config__`` value (JSON text unless given an array)."""
    value = config if isinstance(config, np.ndarray) else np.array(json.dumps(config))
    with open(path, "wb") as f:
        np.savez(f, __config__=value, **params)
    return path


def doctored(tmp_path: Path, model: ConvLM, *, params=None, **config: object) -> Path:
    """``model``'s file with configuration fields or weights replaced."""
    cfg = json.loads(model.config.to_json())
    cfg.update(config)
    return write_file(tmp_path / "model.npz", cfg, {**model.params, **(params or {})})


# ---------------------------------------------------------------------- size limit
def test_a_tiny_file_cannot_demand_a_huge_max_len(tmp_path: Path) -> None:
    from futurefill.models import MAX_LEN_LIMIT

    cfg = ModelConfig(mixer="stu", dim=4, layers=1, vocab_size=8, stu_k=4, max_len=2**20)
    path = write_file(tmp_path / "big.npz", json.loads(cfg.to_json()), init_params(cfg))
    assert path.stat().st_size < 10_000  # STU weights do not grow with max_len
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"max_len = 1048576.*max_len_limit=1048576") as info:
        ConvLM.load(path)
    assert time.perf_counter() - start < 1.0
    assert str(MAX_LEN_LIMIT) in str(info.value) and "\n" not in str(info.value)
    # The caller may allow it explicitly (nothing is computed until generation).
    assert ConvLM.load(path, max_len_limit=2**20).config.max_len == 2**20
    assert ConvLM.load(path, max_len_limit=None).config.max_len == 2**20


def test_the_limit_is_checked_before_the_weights_are_read(tmp_path: Path) -> None:
    cfg = json.loads(tiny().config.to_json())
    cfg["max_len"] = 2**30
    path = write_file(tmp_path / "m.npz", cfg, {})  # no weights at all
    with pytest.raises(ValueError, match="max_len_limit"):
        ConvLM.load(path)


def test_max_len_limit_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    tiny().save(path)
    with pytest.raises(TypeError, match="max_len_limit"):
        ConvLM.load(path, max_len_limit="big")
    with pytest.raises(ValueError, match="max_len = 16"):
        ConvLM.load(path, max_len_limit=8)


# ---------------------------------------------------------------------- weights
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_refused(tmp_path: Path, bad: float) -> None:
    model = tiny()
    embed = np.array(model.params["embed"])
    embed[1, 2] = bad
    path = doctored(tmp_path, model, params={"embed": embed})
    with pytest.raises(ValueError, match=r"'embed'.*finite"):
        ConvLM.load(path)
    with pytest.raises(ValueError, match=r"'embed'.*finite"):
        ConvLM(model.config, {**model.params, "embed": embed})


def test_weights_that_overflow_the_model_dtype_are_refused() -> None:
    model = tiny(dtype="float32")
    head = np.array(model.params["head"], dtype=np.float64)
    head[0, 0] = 1e300
    with pytest.raises(ValueError, match=r"'head'.*finite"):
        ConvLM(model.config, {**model.params, "head": head})


@pytest.mark.parametrize("dtype", [np.complex128, np.bool_, np.str_])
def test_weights_must_be_real_numbers(tmp_path: Path, dtype: type) -> None:
    model = tiny()
    norm = np.ones(4, dtype=dtype)
    path = doctored(tmp_path, model, params={"norm": norm})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ComplexWarning: an error instead
        with pytest.raises(ValueError, match=r"'norm'.*real"):
            ConvLM.load(path)


def test_wrong_weight_names_and_shapes(tmp_path: Path) -> None:
    model = tiny()
    params = dict(model.params)
    params.pop("head")
    with pytest.raises(ValueError, match=r"missing.*head"):
        ConvLM(model.config, params)
    path = doctored(tmp_path, model, params={"norm": np.ones(5)})
    with pytest.raises(ValueError, match=r"'norm'.*\(5,\).*\(4,\)"):
        ConvLM.load(path)


# ---------------------------------------------------------------------- configuration
BAD_CONFIGS = [
    ({"norm_eps": -1}, ValueError, "norm_eps"),
    ({"norm_eps": 0}, ValueError, "norm_eps"),
    ({"norm_eps": float("nan")}, ValueError, "norm_eps"),
    ({"norm_eps": "1e-6"}, TypeError, "norm_eps"),
    ({"seed": "zzz"}, TypeError, "seed"),
    ({"seed": -1}, ValueError, "seed"),
    ({"seed": 1.5}, TypeError, "seed"),
    ({"mlp_ratio": "4"}, TypeError, "mlp_ratio"),
    ({"mlp_ratio": True}, TypeError, "mlp_ratio"),
    ({"mlp_ratio": -1.0}, ValueError, "mlp_ratio"),
    ({"mlp_ratio": 0.01}, ValueError, "mlp_ratio"),
    ({"dim": 4.0}, TypeError, "dim"),
    ({"layers": True}, TypeError, "layers"),
    ({"max_len": 0}, ValueError, "max_len"),
    ({"bos": "0"}, TypeError, "bos"),
    ({"bos": 8}, ValueError, "bos"),
    ({"mixer": 3}, ValueError, "mixer"),
    ({"dtype": "float16"}, ValueError, "dtype"),
    ({"stu_k": 32}, ValueError, "stu_k"),
]


@pytest.mark.parametrize(("change", "error", "name"), BAD_CONFIGS)
def test_bad_configuration_values(change: dict, error: type, name: str) -> None:
    fields = {"mixer": "stu", "dim": 4, "vocab_size": 8, "stu_k": 4, "max_len": 16, **change}
    with pytest.raises(error, match=name) as info:
        ModelConfig(**fields)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("change", "error", "name"), BAD_CONFIGS)
def test_bad_configuration_values_in_a_file(
    tmp_path: Path, change: dict, error: type, name: str
) -> None:
    path = doctored(tmp_path, tiny(), **change)
    with pytest.raises(ValueError, match=name) as info:
        ConvLM.load(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


@pytest.mark.parametrize(
    ("config", "match"),
    [
        (np.array(1.5), "JSON"),
        (np.array(["{}", "{}"]), "JSON"),
        (np.array("{not json"), "JSON"),
        (np.array("[1, 2]"), "JSON object"),
        (np.array("3.5"), "JSON object"),
    ],
)
def test_bad_config_entries(tmp_path: Path, config: np.ndarray, match: str) -> None:
    path = write_file(tmp_path / "m.npz", config, dict(tiny().params))
    with pytest.raises(ValueError, match=match):
        ConvLM.load(path)


def test_files_that_are_not_model_files(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a futurefill model file"):
        ConvLM.load(text)
    array = tmp_path / "array.npy"
    np.save(array, np.zeros(3))
    with pytest.raises(ValueError, match="not a futurefill model file"):
        ConvLM.load(array)


# ---------------------------------------------------------------------- paths
@pytest.mark.parametrize("name", ["model", "model.npz", "model.bin"])
def test_save_and_load_agree_on_the_path(tmp_path: Path, name: str) -> None:
    model = tiny()
    path = tmp_path / name
    model.save(str(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    loaded = ConvLM.load(str(path))
    assert loaded.config == model.config
    np.testing.assert_array_equal(loaded.generate([1], 4), model.generate([1], 4))


# ---------------------------------------------------------------------- what is read
def _peak_while(work) -> int:
    """Peak bytes NumPy and the zip reader allocate while ``work()`` runs."""
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _append_entry(path: Path, name: str, data: bytes) -> None:
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)


BIG = 48 << 20  # deflates to about 50 KB


def test_an_extra_entry_is_refused_before_anything_is_read(tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    tiny().save(path)
    _append_entry(path, "junk.npy", b"\0" * BIG)
    assert path.stat().st_size < BIG // 100

    def load() -> None:
        with pytest.raises(ValueError, match=r"m\.npz.*unexpected \['junk'\]") as info:
            ConvLM.load(path)
        assert "\n" not in str(info.value)

    assert _peak_while(load) < BIG // 8


def test_a_weight_larger_than_its_header_says_is_refused_unread(tmp_path: Path) -> None:
    """An entry named like a weight, with the right header, declaring more bytes."""
    model = tiny()
    path = tmp_path / "m.npz"
    weights = {k: v for k, v in model.params.items() if k != "norm"}
    write_file(path, json.loads(model.config.to_json()), weights)
    header = io.BytesIO()
    np.save(header, np.ones(4))
    _append_entry(path, "norm.npy", header.getvalue() + b"\0" * BIG)

    def load() -> None:
        with pytest.raises(ValueError, match=r"'norm' declares \d+ bytes, but a float64 array"):
            ConvLM.load(path)

    assert _peak_while(load) < BIG // 8


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ("notes.txt", "'notes.txt' is not an .npy array"),
        ("embed.npy", "appears twice"),
    ],
)
def test_entries_that_are_not_weights(tmp_path: Path, entry: str, match: str) -> None:
    path = tmp_path / "m.npz"
    tiny().save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile: duplicate name
        _append_entry(path, entry, b"text")
    with pytest.raises(ValueError, match=match):
        ConvLM.load(path)


def test_a_pickled_weight_is_not_read(tmp_path: Path) -> None:
    model = tiny()
    path = doctored(tmp_path, model, params={"norm": np.array([1, 2, 3, 4], dtype=object)})
    with pytest.raises(ValueError, match="'norm' holds Python objects"):
        ConvLM.load(path)


def test_a_configuration_entry_of_megabytes_is_not_read(tmp_path: Path) -> None:
    cfg = json.loads(tiny().config.to_json())
    path = write_file(tmp_path / "m.npz", np.array(json.dumps(cfg) + " " * (1 << 20)), {})
    with pytest.raises(ValueError, match=r"'__config__' declares \d+ bytes"):
        ConvLM.load(path)


def test_a_deeply_nested_configuration_is_a_clear_error(tmp_path: Path) -> None:
    text = '{"dim": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(ValueError, match="nested too deeply") as info:
        ModelConfig.from_json(text)
    assert "\n" not in str(info.value)
    deep = '{"dim": ' + "[" * 3000 + "]" * 3000 + "}"  # 24 KB as .npy text: under the cap
    path = write_file(tmp_path / "m.npz", np.array(deep), {})
    with pytest.raises(ValueError, match=r"m\.npz.*nested too deeply"):
        ConvLM.load(path)


# ---------------------------------------------------------------------- building
def test_a_model_too_large_to_build_is_refused_first() -> None:
    """Its weights and long filters are estimated before anything is drawn."""
    memory.set_memory_limit(64 << 20)
    try:
        with pytest.raises(MemoryError, match=r"hyena model of 4 layers x 256 wide over 2000000"):
            ConvLM(mixer="hyena", dim=256, layers=4, max_len=2_000_000)
        with pytest.raises(MemoryError, match="stu model"):
            ConvLM(mixer="stu", dim=8, layers=1, stu_k=24, max_len=4_000_000)
        assert ConvLM(mixer="hyena", dim=8, layers=1, max_len=256).config.max_len == 256
    finally:
        memory.set_memory_limit(None)


@pytest.mark.parametrize(
    ("mixer", "max_len"),
    [("stu", 999), ("stu", 3001), ("stu_full", 1500), ("hyena", 5000)],  # lengths no other
)  # test uses: the STU basis is computed here (dense up to 1024 taps), not found cached
def test_building_a_model_stays_within_its_estimate(mixer: str, max_len: int) -> None:
    cfg = ModelConfig(mixer=mixer, dim=6, layers=2, vocab_size=16, stu_k=5, max_len=max_len)

    def build() -> None:
        ConvLM(cfg).host_filters()

    assert _peak_while(build) <= model_bytes(cfg)
