"""Voice prompts of the hotline: the default Mandarin prompt set, its generation, and loading.

Prompts are WAV files named ``<name>.wav`` in the prompts directory (``settings.prompts_dir``).
An admin may replace any of them with a recorded voice; :func:`build_prompts` only writes the
missing ones unless ``force=True``, so a replaced file is never overwritten silently.

Default prompts are generated at set-up (``hotline prompts build``), never downloaded:
the Chinese text is turned into tone-numbered pinyin with ``pypinyin`` (``Style.TONE3``; digits
are read one by one in Chinese, with 1 as 幺 as on the telephone, so 12388 is 幺二三八八), spoken by
``espeak-ng`` with the voice ``cmn-latn-pinyin``, and converted with ``sox`` to
16 kHz mono 16-bit PCM WAV (:data:`PROMPT_RATE`). The beep is a 1 kHz, 0.3 s sine tone.

The prompt set (name -> text), the documentation of each prompt's wording, is :data:`PROMPTS`.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

PROMPT_RATE = 16000
ESPEAK_VOICE = "cmn-latn-pinyin"

BEEP = "beep"

#: The default prompt set: name -> the Chinese text it says. ``beep`` is a tone, not speech.
PROMPTS: dict[str, str] = {
    # Played at answer, before anything else (the recording notice).
    "notice": "您好，这里是12388举报电话。为了更好地为您服务，本次通话将被录音。",
    # Before the caller's free report (followed by the beep).
    "speak_after_tone": "请在提示音后讲述您要反映的问题，讲完后请挂机。",
    # The tone after which the caller speaks.
    BEEP: "(1 kHz 提示音, 0.3 秒)",
    # Played periodically while a caller waits for an operator (routing issue).
    "queue": "请稍候，接线员马上为您服务。",
    # After hours / nobody free: offer voicemail.
    "voicemail_offer": "现在没有空闲的接线员。留言请按1，稍后回拨请按2。",
    # Auto-attendant greeting.
    "attendant_greeting": "您好，这里是12388举报电话。现在是非工作时间。",
    # Auto-attendant menu.
    "menu": "反映问题请按1，了解受理范围请按2，重听请按9。",
    # What 12388 accepts and where other matters go.
    "scope_info": (
        "12388举报电话受理对党组织、党员和监察对象违反党纪、职务违法和职务犯罪行为的检举控告。"
        "涉及诉讼的问题请向人民法院反映，治安问题请拨打110报警，"
        "其他信访事项请向信访部门反映，劳动纠纷请向劳动保障监察部门反映。"
    ),
    # Before recording a voicemail (followed by the beep).
    "voicemail_greeting": "请在提示音后留言，讲完后请按井号键或挂机。",
    # After a voicemail was recorded.
    "confirmation": "您的留言已经录制，工作人员将及时处理。谢谢。",
    # Invalid or missing menu input.
    "invalid_input": "您的输入有误，请重新选择。",
    # End of the call.
    "goodbye": "感谢您的来电，再见。",
    # The call reached the maximum length (max_call_seconds).
    "too_long": "通话时间已达上限，感谢您的来电，再见。",
}

_DIGITS = dict(zip("0123456789", "零幺二三四五六七八九"))


class PromptError(Exception):
    """A prompt file is missing or not usable audio; the message names the file."""


@dataclass(frozen=True)
class Prompt:
    name: str
    path: Path
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / float(self.sample_rate) if self.sample_rate else 0.0


# ---------------------------------------------------------------- text -> pinyin -> speech
def to_pinyin(text: str) -> str:
    """Tone-numbered pinyin (``Style.TONE3``) for espeak-ng's ``cmn-latn-pinyin`` voice.

    Digits are read one by one (1 as 幺); punctuation becomes a pause (comma / period)."""
    from pypinyin import Style, lazy_pinyin

    text = "".join(_DIGITS.get(ch, ch) for ch in text)
    text = re.sub(r"[，、；：,;:]", ",", text)
    text = re.sub(r"[。！？!?]", ".", text)
    syllables = lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True, errors="default")
    out: list[str] = []
    for s in syllables:
        s = s.strip()
        if not s or s in "()（）":
            continue
        if set(s) <= set(",."):
            out.append(s[0])
        else:
            out.append(s.replace("ü", "v"))
    return " ".join(out).replace(" ,", ",").replace(" .", ".")


def _require_tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        raise PromptError(f"{name} is not installed (Debian package {'espeak-ng' if name == 'espeak-ng' else name})")
    return path


def synthesize(text: str, dest: Path, rate: int = PROMPT_RATE) -> Path:
    """Speak ``text`` (Chinese) into ``dest`` as a mono PCM16 WAV at ``rate`` (atomic write)."""
    espeak = _require_tool("espeak-ng")
    sox = _require_tool("sox")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="prompt-") as td:
        raw = Path(td) / "espeak.wav"
        tmp = Path(td) / "out.wav"
        r = subprocess.run([espeak, "-v", ESPEAK_VOICE, "-s", "150", "-w", str(raw), to_pinyin(text)],
                           capture_output=True, text=True)
        if r.returncode != 0 or not raw.exists():
            raise PromptError(f"espeak-ng failed for {dest.name}: {r.stderr.strip()}")
        # Resample to the bridge rate, mono, 16-bit; short silence at both ends; normalise to -3 dBFS.
        r = subprocess.run([sox, str(raw), "-r", str(rate), "-c", "1", "-b", "16", "-e", "signed-integer",
                            str(tmp), "pad", "0.1", "0.2", "gain", "-n", "-3"], capture_output=True, text=True)
        if r.returncode != 0:
            raise PromptError(f"sox failed for {dest.name}: {r.stderr.strip()}")
        _atomic_copy(tmp, dest)
    return dest


def make_beep(dest: Path, rate: int = PROMPT_RATE, freq: float = 1000.0, seconds: float = 0.3) -> Path:
    """A sine beep (numpy + soundfile), with 5 ms fades to avoid clicks."""
    n = int(rate * seconds)
    t = np.arange(n) / rate
    tone = 0.5 * np.sin(2 * np.pi * freq * t)
    fade = max(1, int(rate * 0.005))
    ramp = np.linspace(0.0, 1.0, fade)
    tone[:fade] *= ramp
    tone[-fade:] *= ramp[::-1]
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    sf.write(str(tmp), (tone * 32767).astype(np.int16), rate, subtype="PCM_16", format="WAV")
    os.replace(tmp, dest)
    return dest


def _atomic_copy(src: Path, dest: Path) -> None:
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


def build_prompts(prompts_dir: Path, force: bool = False, names: list[str] | None = None,
                  progress=None) -> dict[str, str]:
    """Write the default prompts missing from ``prompts_dir`` (all of them with ``force``).

    Returns name -> "written" / "kept". ``progress(name, status)`` is called per prompt."""
    prompts_dir = Path(prompts_dir)
    prompts_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, str] = {}
    for name in names or list(PROMPTS):
        if name not in PROMPTS:
            raise PromptError(f"unknown prompt {name!r}; known: {', '.join(PROMPTS)}")
        dest = prompts_dir / f"{name}.wav"
        if dest.exists() and not force:
            result[name] = "kept"
        else:
            if name == BEEP:
                make_beep(dest)
            else:
                synthesize(PROMPTS[name], dest)
            result[name] = "written"
        if progress:
            progress(name, result[name])
    return result


# ---------------------------------------------------------------- loading
def load_prompt(path: Path, name: str | None = None) -> Prompt:
    """Validate one prompt WAV: readable by soundfile and mono (or convertible: see
    :func:`prepare_prompt`). Raises :class:`PromptError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise PromptError(f"prompt file missing: {path} (run `hotline prompts build`)")
    try:
        info = sf.info(str(path))
    except Exception as e:  # soundfile raises RuntimeError / LibsndfileError
        raise PromptError(f"prompt file {path} is not readable audio: {e}") from e
    if info.frames <= 0 or info.samplerate <= 0:
        raise PromptError(f"prompt file {path} contains no audio")
    if info.channels < 1:
        raise PromptError(f"prompt file {path} has no channel")
    return Prompt(name or path.stem, path, info.samplerate, info.channels, info.frames)


def prepare_prompt(src: Path, cache_dir: Path, rate: int = PROMPT_RATE) -> Prompt:
    """Return a prompt usable by the media bridge: mono PCM16 WAV at ``rate``.

    A file already in that form is used in place; anything else soundfile can read (stereo, other
    rate, float, FLAC...) is converted into ``cache_dir`` (mixed down to mono, resampled with soxr)."""
    p = load_prompt(src)
    info = sf.info(str(p.path))
    if info.channels == 1 and info.samplerate == rate and info.subtype == "PCM_16" and info.format == "WAV":
        return p
    data, sr = sf.read(str(p.path), dtype="float32", always_2d=True)
    mono = data.mean(axis=1)
    if sr != rate:
        import soxr

        mono = soxr.resample(mono, sr, rate)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    dest = cache_dir / f"{p.name}.{rate}.wav"
    tmp = dest.with_name(f".{dest.name}.tmp")
    sf.write(str(tmp), np.clip(mono, -1, 1), rate, subtype="PCM_16", format="WAV")
    os.replace(tmp, dest)
    return load_prompt(dest, p.name)


class PromptSet:
    """The prompts of a directory, validated and converted on load; a missing or broken file
    raises :class:`PromptError` naming it."""

    def __init__(self, prompts_dir: Path, rate: int = PROMPT_RATE, cache_dir: Path | None = None,
                 required: tuple[str, ...] = ("notice", "speak_after_tone", BEEP, "too_long")) -> None:
        self.dir = Path(prompts_dir)
        self.rate = rate
        self.cache_dir = Path(cache_dir) if cache_dir else self.dir / ".cache"
        self._prompts: dict[str, Prompt] = {}
        for name in required:
            self.get(name)

    def get(self, name: str) -> Prompt:
        if name not in self._prompts:
            self._prompts[name] = prepare_prompt(self.dir / f"{name}.wav", self.cache_dir, self.rate)
        return self._prompts[name]

    def __contains__(self, name: str) -> bool:
        return (self.dir / f"{name}.wav").is_file()
