import os

import pytest

from recordings import keys


def test_wrap_unwrap_and_wrong_master(tmp_path):
    m1, m2 = keys.MasterKey.generate(), keys.MasterKey.generate()
    dek = os.urandom(32)
    w = m1.wrap(dek)
    assert dek not in w and m1.unwrap(w) == dek
    with pytest.raises(keys.WrongMasterKey):
        m2.unwrap(w)
    assert m1.kcv != m2.kcv and len(m1.kcv) == 16
    assert m1.key.hex() not in repr(m1)


def test_file_provider_creates_0600_and_refuses_loose_permissions(tmp_path):
    p = keys.FileKeyProvider(tmp_path / "keys" / "master.key")
    with pytest.raises(keys.MasterKeyMissing):
        p.load()
    k = p.create()
    assert (p.path.stat().st_mode & 0o777) == 0o600
    assert p.load().key == k.key
    with pytest.raises(FileExistsError):
        p.create()  # never overwrites a master key
    os.chmod(p.path, 0o644)
    with pytest.raises(keys.BadMasterKey, match="0600"):
        p.load()


def test_env_provider_validates():
    good = keys.encode_key(os.urandom(32))
    assert len(keys.EnvKeyProvider(good).load().key) == 32
    for bad in ("not base64!!", keys.encode_key(os.urandom(16))):
        with pytest.raises(keys.BadMasterKey):
            keys.EnvKeyProvider(bad).load()


def test_field_cipher_is_bound_to_its_context():
    c = keys.FieldCipher(os.urandom(32))
    t = c.encrypt("13812340918", "calls.caller_number")
    assert t.startswith("enc1:") and "13812340918" not in t
    assert c.decrypt(t, "calls.caller_number") == "13812340918"
    with pytest.raises(keys.FieldDecryptError):
        c.decrypt(t, "drafts.reporter_phone")
    with pytest.raises(keys.FieldDecryptError):
        keys.FieldCipher(os.urandom(32)).decrypt(t, "calls.caller_number")


def test_wrapped_key_file(tmp_path):
    m = keys.MasterKey.generate()
    f = keys.WrappedKeyFile(tmp_path / "field.key")
    k = f.load_or_create(m)
    assert f.load_or_create(m) == k
    with pytest.raises(keys.WrongMasterKey):
        f.load(keys.MasterKey.generate())
