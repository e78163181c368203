"""Issue 11 B: the import limit holds for the decoded audio, not only for the upload. A few hundred
KB of FLAC (digital silence) decode into hundreds of MB on the volume the call spool shares; such an
import is refused with 413 and leaves nothing on disk, whether the FLAC header says how long it is
(refused before anything is written) or not (refused while decoding)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from sqlalchemy import select

from asr.audio import DecodedTooLarge, convert_to_wav
from hotline_api.models.calls import Recording
from hotline_api.services import audit, auth, storage
import tests.hotline_api.services.govtest_util  # noqa: F401

PW = "correct horse battery"
RATE = 8000


def silent_flac(frames: int, unknown_length: bool = False) -> bytes:
    """FLAC of digital silence (8 kHz mono 16-bit: 16 000 bytes a second decoded, a few bytes
    encoded). ``unknown_length``: the STREAMINFO total-samples field is 0, as a streaming encoder
    writes it (the header then says nothing about the decoded size)."""
    buf = io.BytesIO()
    block = np.zeros((RATE * 600, 1), dtype=np.int16)
    with sf.SoundFile(buf, "w", samplerate=RATE, channels=1, format="FLAC", subtype="PCM_16") as f:
        left = frames
        while left > 0:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n
    data = bytearray(buf.getvalue())
    if unknown_length:
        assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO first
        si = 8  # 'fLaC' + metadata block header; total samples: low 36 bits of STREAMINFO bytes 10..17
        packed = int.from_bytes(data[si + 10:si + 18], "big") & ~((1 << 36) - 1)
        data[si + 10:si + 18] = packed.to_bytes(8, "big")
    return bytes(data)


def files_under(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()}


@pytest.fixture
def client(settings, db):
    from hotline_api.app import create_app
    from hotline_api.db import crypto_types

    storage.open_crypto(settings, db)
    with db() as s:
        u, _ = auth.create_user(s, "sup_import", "supervisor", PW)
        s.commit()
        token = auth.issue_token(settings, u)
    with TestClient(create_app(settings), base_url="https://testserver") as c:
        c.headers["Authorization"] = f"Bearer {token}"
        yield c
    crypto_types.set_field_cipher(None)


def _nothing_imported(settings, db) -> None:
    with db() as s:
        assert s.execute(select(Recording).where(Recording.kind == "import")).first() is None
        assert [e for e in audit.iter_entries(s) if e["action"] == "recording.import"] == []
    imports = Path(settings.spool_dir) / "imports"
    assert not imports.exists() or list(imports.iterdir()) == []


def test_flac_bomb_within_the_upload_limit_is_refused_413_before_decoding(settings, db, client):
    """Default limit (200 MB): ~330 KB of FLAC whose header announces > 200 MB of audio."""
    limit = int(settings.import_max_mb * 1024 * 1024)
    bomb = silent_flac(limit // 2 + RATE * 60)  # a minute of audio past the limit
    assert len(bomb) < 1024 * 1024 < limit
    before = files_under(settings.data_dir)
    for kw in ({"content": bomb, "headers": {"Content-Type": "audio/flac"}, "params": {"filename": "vm.flac"}},
               {"files": {"file": ("vm.flac", bomb, "audio/flac")}}):
        r = client.post("/api/recordings/import", **kw)
        assert r.status_code == 413, r.text
        assert "解码" in r.json()["detail"] and "MB" in r.json()["detail"]
    assert files_under(settings.data_dir) == before
    _nothing_imported(settings, db)


def test_flac_without_a_length_in_its_header_is_stopped_while_decoding(settings, db, client):
    """The header says nothing (total samples 0): the bytes written are counted; past the limit the
    import stops with 413 and the partly decoded file is removed."""
    settings.import_max_mb = 1
    bomb = silent_flac(RATE * 120, unknown_length=True)  # 2 minutes: 1.9 MB decoded, a few KB encoded
    with sf.SoundFile(io.BytesIO(bomb)) as f:
        assert f.frames == 2**63 - 1  # libsndfile: length unknown
    before = files_under(settings.data_dir)
    r = client.post("/api/recordings/import", params={"filename": "vm.flac"}, content=bomb,
                    headers={"Content-Type": "audio/flac"})
    assert r.status_code == 413, r.text
    assert files_under(settings.data_dir) == before
    _nothing_imported(settings, db)


def test_flac_within_the_decoded_limit_is_still_imported(settings, db, client):
    settings.import_max_mb = 1
    ok = silent_flac(RATE * 30)  # 480 KB decoded
    r = client.post("/api/recordings/import", params={"filename": "vm.flac"}, content=ok,
                    headers={"Content-Type": "audio/flac"})
    assert r.status_code == 201, r.text
    assert abs(r.json()["duration"] - 30.0) < 0.01


def test_convert_to_wav_refuses_without_leaving_a_file(tmp_path):
    src = tmp_path / "in.flac"
    dst = tmp_path / "out.wav.part"
    src.write_bytes(silent_flac(RATE * 10))  # 160 044 bytes as WAV
    with pytest.raises(DecodedTooLarge):
        convert_to_wav(src, dst, 100_000)
    assert not dst.exists()
    src.write_bytes(silent_flac(RATE * 10, unknown_length=True))
    with pytest.raises(DecodedTooLarge):
        convert_to_wav(src, dst, 100_000, block_frames=4096)
    assert not dst.exists()
    src.write_bytes(silent_flac(RATE * 10))
    info = convert_to_wav(src, dst, 160_044)
    assert info.frames == RATE * 10 and info.format == "FLAC" and dst.stat().st_size == 160_044
    assert dst.stat().st_mode & 0o777 == 0o600
