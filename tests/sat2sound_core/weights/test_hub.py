"""The Hub client: local copies, whole-file fetches (loopback Hub), repo files, the progress adapter."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sat2sound_core.common.errors import DownloadError
from sat2sound_core.weights import hub
from sat2sound_core.weights.registry import resolve_source
from tests.fixtures.mini_hub import MiniHub


# ----------------------------------------------------------------------------- progress and sizes
def test_progress_adapter_forwards_byte_counts_and_draws_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[tuple[float, float, str]] = []
    bar_class = hub.progress_bar_class(lambda d, t, m: seen.append((d, t, m)), "model.ckpt")
    assert bar_class is not None
    # huggingface_hub passes its own keywords (name, initial when resuming, total, unit ...)
    bar = bar_class(total=1000, initial=200, name="huggingface_hub.http_get", unit="B", desc="model.ckpt")
    bar.update(300)
    bar.update(500)
    bar.update(100)  # more than announced: the total follows
    bar.close()
    assert seen == [(500.0, 1000.0, "downloading model.ckpt"), (1000.0, 1000.0, "downloading model.ckpt"),
                    (1100.0, 1100.0, "downloading model.ckpt")]
    assert capsys.readouterr().err == ""  # the callback is the only output


def test_without_a_callback_huggingface_hub_draws_its_own_bar() -> None:
    assert hub.progress_bar_class(None, "x") is None


def test_sizes_for_messages() -> None:
    assert hub.human_size(3_437_051_960) == "3.44 GB" and hub.human_size(252) == "252 B"
    assert hub.approx_size(669_000_000) == "≈669 MB" and hub.approx_size(4_061_516_212) == "≈4.06 GB"
    assert hub.approx_size(None) == "size unknown"


def test_local_copy_at_its_repo_path_or_flat(tmp_path: Path) -> None:
    assert hub.local_copy("demo/g.h5", tmp_path) is None
    (tmp_path / "g.h5").write_bytes(b"flat")
    assert hub.local_copy("demo/g.h5", tmp_path) == tmp_path / "g.h5"
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "g.h5").write_bytes(b"nested")
    assert hub.local_copy("demo/g.h5", tmp_path) == tmp_path / "demo" / "g.h5"  # the repo path wins


def test_offline_repo_files_name_what_is_missing(product_home: Path) -> None:
    with pytest.raises(DownloadError) as info:
        hub.fetch_repo_files("someone/repo", {"a.safetensors": 2_000_000, "b.json": 10})
    text = str(info.value)
    assert "someone/repo" in text and "a.safetensors (2.00 MB)" in text and "HF_HUB_OFFLINE" in text


def test_offline_small_files_say_where_to_put_them(product_home: Path, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="needed for the test but offline") as info:
        hub.fetch_file("someone/repo", "config.json", needed_for="the test", folder=tmp_path / "here")
    assert str(tmp_path / "here") in str(info.value)


# ----------------------------------------------------------------------------- whole files
def test_local_paths_and_weights_dir_copies_need_no_network(tmp_path: Path) -> None:
    local = tmp_path / "mine.ckpt"
    local.write_bytes(b"x")
    assert hub.fetch(resolve_source(local), tmp_path / "w", offline=True) == local.resolve()
    weights = tmp_path / "w"
    (weights / "sat2sound").mkdir(parents=True)
    placed = weights / "sat2sound" / "bingmap_withmeta.ckpt"
    placed.write_bytes(b"y")
    assert hub.fetch(resolve_source("bingmap_withmeta"), weights, offline=True) == placed
    flat = tmp_path / "w2"
    flat.mkdir()
    (flat / "sentinel_nometa.ckpt").write_bytes(b"z")
    assert hub.fetch(resolve_source("sentinel_nometa"), flat, offline=True) == flat / "sentinel_nometa.ckpt"


def test_offline_and_missing_says_what_to_download_and_where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty HF cache
    with pytest.raises(DownloadError) as info:
        hub.fetch(resolve_source("SoundingEarth_withmeta"), tmp_path / "w", offline=True)
    text = str(info.value)
    assert "sat2sound/SoundingEarth_withmeta.ckpt" in text
    assert "≈669 MB" in text
    assert str(tmp_path / "w" / "sat2sound" / "SoundingEarth_withmeta.ckpt") in text
    assert "HF_HUB_OFFLINE" in text


@pytest.fixture()
def mini_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[MiniHub]:
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hc, "DOWNLOAD_CHUNK_SIZE", 16 * 1024)  # small chunks: a broken transfer keeps bytes
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    server = MiniHub().start()
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    yield server
    server.stop()


def test_download_through_huggingface_hub_with_progress_and_resume(mini_hub: MiniHub, tmp_path: Path) -> None:
    payload = os.urandom(300_000)
    mini_hub.add("MVRL/sat2sound", "sat2sound/bingmap_nometa.ckpt", payload)
    mini_hub.fail_after = 100_000  # the first transfer breaks off
    seen: list[tuple[float, float]] = []
    weights = tmp_path / "weights"
    try:
        path = hub.fetch(resolve_source("bingmap_nometa"), weights, offline=False,
                        progress=lambda d, t, m="": seen.append((d, t)))
    except DownloadError:  # huggingface_hub gave up on the broken transfer: a second call resumes
        path = hub.fetch(resolve_source("bingmap_nometa"), weights, offline=False,
                        progress=lambda d, t, m="": seen.append((d, t)))
    assert path == weights / "sat2sound" / "bingmap_nometa.ckpt"
    assert path.read_bytes() == payload
    gets = mini_hub.gets("bingmap_nometa.ckpt")
    assert len(gets) >= 2
    assert any(g.range and not g.range.startswith("bytes=0-") for g in gets)  # resumed, not restarted
    assert seen and seen[-1][0] == seen[-1][1] == len(payload)
    # now it is local: no more requests
    before = len(mini_hub.requests)
    assert hub.fetch(resolve_source("bingmap_nometa"), weights, offline=False) == path
    assert len(mini_hub.requests) == before


def test_download_failure_is_a_clear_error(mini_hub: MiniHub, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="Could not download sat2sound/bingmap_withmeta.ckpt"):
        hub.fetch(resolve_source("bingmap_withmeta"), tmp_path / "w", offline=False)


def test_hf_hub_sources_download_from_their_repo(mini_hub: MiniHub, tmp_path: Path) -> None:
    mini_hub.add("someone/mirror", "ckpts/model.ckpt", b"abc" * 1000)
    path = hub.fetch(resolve_source("hf-hub:someone/mirror/ckpts/model.ckpt"), tmp_path / "w", offline=False)
    assert path.read_bytes() == b"abc" * 1000



def test_offline_finds_files_in_the_hugging_face_cache(mini_hub: MiniHub, tmp_path: Path) -> None:
    from huggingface_hub import hf_hub_download

    mini_hub.add("MVRL/sat2sound", "sat2sound/sentinel_withmeta.ckpt", b"cached" * 100)
    weights = tmp_path / "w"
    # e.g. fetched earlier by another tool into the product's HF cache
    hf_hub_download("MVRL/sat2sound", "sat2sound/sentinel_withmeta.ckpt", cache_dir=weights / "hf",
                    endpoint=mini_hub.endpoint)
    before = len(mini_hub.requests)
    for offline in (True, False):  # online too: a cached copy is not downloaded again
        path = hub.fetch(resolve_source("sentinel_withmeta"), weights, offline=offline)
        assert path.read_bytes() == b"cached" * 100
    assert len(mini_hub.requests) == before  # nothing went over the network
