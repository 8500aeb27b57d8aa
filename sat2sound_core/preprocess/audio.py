"""Audio preprocessing: decode a file, then the official 10-s log-mel (1001 frames x 64 mels).

The official features come from torchaudio's windowed-sinc resampler and torchlibrosa's STFT and
Slaney mel filterbank. Neither library is a dependency here: the resampling kernel and the mel
filterbank are computed from their mathematical definitions (docs/model.md#audio) in plain torch/numpy,
reproducing the precision choices that make the numbers match (the kernel's phase term is formed in
float32 before it is widened to float64, the filterbank is accumulated in float32).
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from sat2sound_core.common.errors import InputError

if TYPE_CHECKING:
    import soundfile as sf

log = logging.getLogger(__name__)

SAMPLE_RATE = 32_000
SEGMENT_SECONDS = 10
SEGMENT_SAMPLES = SAMPLE_RATE * SEGMENT_SECONDS
N_FFT = 1024
HOP = 320
N_MELS = 64
F_MIN = 50.0
F_MAX = 14_000.0
N_FRAMES = SEGMENT_SAMPLES // HOP + 1  # 1001 with centre padding
AMIN = 1e-10
# Resampler defaults of the official pipeline (torchaudio.transforms.Resample).
LOWPASS_FILTER_WIDTH = 6
ROLLOFF = 0.99

SUPPORTED_FORMATS = ("wav", "flac", "ogg", "mp3")
#: frames decoded per soundfile read when a window is read from an :class:`AudioFile`
READ_BLOCK = 1 << 18
#: largest channel count and sample rate an :class:`AudioFile` accepts
MAX_CHANNELS = 64
MAX_SAMPLE_RATE = 768_000
#: most samples (frames x channels) :func:`load_audio` decodes whole (512 MB of float32); longer
#: recordings are read window by window through :func:`open_audio`
MAX_DECODED_SAMPLES = 1 << 27
_MAX_KERNEL = 20_000_000  # resampling-kernel elements (80 MB); beyond that see _resample_soxr
# Decoded float audio may overshoot 1.0 slightly (lossy codecs); anything beyond this is not [-1, 1] audio.
_PEAK_LIMIT = 1.5

AudioSource = str | os.PathLike | bytes | bytearray | memoryview | io.IOBase


@dataclass(frozen=True)
class MelWindows:
    """Log-mels of consecutive 10-s windows of one recording.

    ``mels`` is (W, 1001, 64) float32; ``starts_seconds[i]`` is where window ``i`` begins in the
    recording. Average the W audio embeddings for one embedding of the whole recording.
    """

    mels: torch.Tensor
    starts_seconds: tuple[float, ...]


def load_audio(source: AudioSource) -> tuple[torch.Tensor, int]:
    """Decode an audio file (path, bytes or file object) to a float32 (C, T) waveform and its rate.

    Uses soundfile (libsndfile): wav, flac, ogg/vorbis and mp3. Samples are in [-1, 1] as
    ``torchaudio.load`` would return them. Raises :class:`InputError` for a missing, empty, silent,
    corrupt or unsupported file, naming what to do instead.
    """
    import soundfile as sf

    name: str
    if isinstance(source, bytes | bytearray | memoryview):
        if len(source) == 0:
            raise InputError("The audio data is empty (0 bytes); give a wav, flac, ogg or mp3 file.")
        handle: object = io.BytesIO(bytes(source))
        name = "the audio data"
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.is_file():
            raise InputError(f"Audio file {path} does not exist; check the path.")
        if path.stat().st_size == 0:
            raise InputError(f"Audio file {path} is empty (0 bytes); give a wav, flac, ogg or mp3 file.")
        handle = str(path)
        name = str(path)
    else:
        handle = source
        name = "the audio stream"
    try:
        with sf.SoundFile(handle) as fh:
            declared = int(fh.frames) * int(fh.channels)
            if declared > MAX_DECODED_SAMPLES:
                raise InputError(
                    f"{name} is {fh.frames / max(fh.samplerate, 1) / 60:.1f} min of {fh.channels} channel(s) at "
                    f"{fh.samplerate} Hz: too long to decode whole (limit {MAX_DECODED_SAMPLES} samples); "
                    "read it window by window with open_audio(), which log_mel and Engine.encode_audio accept."
                )
            data = fh.read(dtype="float32", always_2d=True)
            sr = fh.samplerate
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise _decode_error(name, exc) from exc
    if data.size == 0 or data.shape[0] == 0:
        raise InputError(f"{name} decodes to no samples; give a recording at least a fraction of a second long.")
    if not np.isfinite(data).all():
        raise InputError(f"{name} contains NaN or infinite samples; the file is corrupt.")
    if float(np.abs(data).max()) == 0.0:
        raise InputError(f"{name} is completely silent (every sample is 0); there is nothing to describe.")
    waveform = torch.from_numpy(np.ascontiguousarray(data.T))
    return waveform, int(sr)


class AudioFile:
    """A recording read lazily: only the frames a 10-s window needs are decoded (soundfile seeks),
    channels are mixed down per block and each window is resampled on its own, so the memory a query
    takes does not grow with the recording's length, channel count or sample rate.

    Open one with :func:`open_audio`. :func:`log_mel`, :func:`log_mel_windows` and
    :meth:`Engine.encode_audio <sat2sound_core.engine.Engine.encode_audio>` accept it wherever they take
    a waveform (its own ``sample_rate`` is used). The log-mels are the ones of the decoded waveform
    (the resampler's polyphase blocks are computed from the same input samples).
    """

    def __init__(self, source: AudioSource) -> None:
        import soundfile as sf

        self._path: str | None = None
        self._data: bytes | None = None
        if isinstance(source, bytes | bytearray | memoryview):
            if len(source) == 0:
                raise InputError("The audio data is empty (0 bytes); give a wav, flac, ogg or mp3 file.")
            self._data = bytes(source)
            self.name = "the audio data"
        elif isinstance(source, str | os.PathLike):
            path = Path(source)
            if not path.is_file():
                raise InputError(f"Audio file {path} does not exist; check the path.")
            if path.stat().st_size == 0:
                raise InputError(f"Audio file {path} is empty (0 bytes); give a wav, flac, ogg or mp3 file.")
            self._path = str(path)
            self.name = str(path)
        else:
            self._data = bytes(source.read())
            self.name = "the audio stream"
        try:
            with self._open() as fh:
                self.sample_rate = int(fh.samplerate)
                self.channels = int(fh.channels)
                self.frames = int(fh.frames)
                seekable = bool(fh.seekable())
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
            raise _decode_error(self.name, exc) from None
        if self.frames <= 0:
            raise InputError(
                f"{self.name} decodes to no samples; give a recording at least a fraction of a second long."
            )
        if not 0 < self.sample_rate <= MAX_SAMPLE_RATE or not 0 < self.channels <= MAX_CHANNELS:
            raise InputError(
                f"{self.name} declares {self.channels} channels at {self.sample_rate} Hz; recordings of at most "
                f"{MAX_CHANNELS} channels at up to {MAX_SAMPLE_RATE} Hz are supported."
            )
        if not seekable:
            raise InputError(f"{self.name} cannot be read piecewise (not seekable); convert it to flac or wav.")
        self._heard = False

    def _open(self) -> sf.SoundFile:
        import soundfile as sf

        return sf.SoundFile(io.BytesIO(self._data) if self._data is not None else str(self._path))

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / float(self.sample_rate)

    @property
    def length_32k(self) -> int:
        """Samples of the recording once resampled to 32 kHz (as :func:`resample` would give)."""
        g = math.gcd(self.sample_rate, SAMPLE_RATE)
        return math.ceil((SAMPLE_RATE // g) * self.frames / (self.sample_rate // g))

    def read_mono(self, start: int, count: int) -> torch.Tensor:
        """``count`` mono float32 samples from frame ``start`` at the file's rate (zeros outside the
        recording), decoded in blocks of :data:`READ_BLOCK` frames and mixed down per block.
        NaN/infinite samples or samples far outside [-1, 1] raise :class:`InputError`."""
        import soundfile as sf

        out = torch.zeros(max(count, 0), dtype=torch.float32)
        lo, hi = max(start, 0), min(start + count, self.frames)
        if hi <= lo:
            return out
        try:
            with self._open() as fh:
                fh.seek(lo)
                pos = lo
                while pos < hi:
                    block = fh.read(min(READ_BLOCK, hi - pos), dtype="float32", always_2d=True)
                    if block.shape[0] == 0:
                        break  # the header over-counted the frames: the rest stays zero
                    out[pos - start : pos - start + block.shape[0]] = _mixed(block, self.name)
                    pos += block.shape[0]
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
            raise _decode_error(self.name, exc) from None
        if bool(out.any()):
            self._heard = True
        return out

    def mono_32k(self, start: int, count: int) -> torch.Tensor:
        """``count`` samples from sample ``start`` of the mono recording resampled to 32 kHz (zero past
        its end), reading only the input frames those samples depend on."""
        return _resample_range(self.read_mono, self.frames, self.sample_rate, SAMPLE_RATE, start, count)

    def check_heard(self) -> None:
        """Raise :class:`InputError` when every frame read so far was silent (as :func:`load_audio`
        refuses a silent file)."""
        if not self._heard:
            raise InputError(f"{self.name} is silent where it was read (every sample is 0); there is nothing to describe.")


def open_audio(source: AudioSource) -> AudioFile:
    """An :class:`AudioFile` for a path, bytes or file object: its header is read and checked (frames,
    rate, channels); no sample is decoded until a window is asked for."""
    return AudioFile(source)


def _decode_error(name: str, exc: Exception) -> InputError:
    return InputError(
        f"Could not decode {name}: {exc}. The file is corrupt or not in a supported format "
        f"({', '.join(SUPPORTED_FORMATS)}); convert it, e.g. `ffmpeg -i in.m4a out.flac`."
    )


def _mixed(block: np.ndarray, name: str) -> torch.Tensor:
    """A (frames, C) float32 block as mono (the mean over channels, as :func:`_as_waveform` takes it)."""
    high, low = (float(block.max()), float(block.min())) if block.size else (0.0, 0.0)
    if not (math.isfinite(high) and math.isfinite(low)):
        raise InputError(f"{name} contains NaN or infinite samples; the file is corrupt.")
    if max(high, -low) > _PEAK_LIMIT:
        raise InputError(f"{name} has samples far outside [-1, 1]; the file is corrupt.")
    tensor = torch.from_numpy(np.ascontiguousarray(block.T))
    return tensor.mean(dim=0) if tensor.shape[0] > 1 else tensor[0]


def _resample_range(
    read: Callable[[int, int], torch.Tensor], length: int, orig_rate: int, new_rate: int, start: int, count: int
) -> torch.Tensor:
    """Samples ``start … start + count`` of :func:`resample` of a signal of ``length`` samples that
    ``read(first, n)`` returns piecewise (zeros outside it), computing only the polyphase blocks
    that cover them; samples past the resampled length are zero (as :func:`_segment` pads)."""
    if orig_rate == new_rate:
        return read(start, count)
    g = math.gcd(int(orig_rate), int(new_rate))
    orig, new = int(orig_rate) // g, int(new_rate) // g
    target = math.ceil(new * length / orig)
    if new * (2 * math.ceil(LOWPASS_FILTER_WIDTH * orig / (min(orig, new) * ROLLOFF)) + orig) > _MAX_KERNEL:
        margin = int(orig_rate)  # soxr's filter is far shorter than a second of input
        # start the chunk on a frame whose output position is a whole sample, so the grids line up
        first = max(0, (math.floor(start * orig_rate / new_rate) - margin) // orig * orig)
        chunk = read(first, math.ceil(count * orig_rate / new_rate) + 2 * margin + orig)
        res = _resample_soxr(chunk, int(orig_rate), int(new_rate))
        offset = start - first // orig * new
        out = torch.zeros(count, dtype=torch.float32)
        piece = res[max(offset, 0) : max(offset, 0) + count]
        out[: piece.shape[0]] = piece
    else:
        kernel, width = _sinc_kernel(orig, new)
        b0 = start // new
        b1 = -(-(start + count) // new)
        x = read(b0 * orig - width, (b1 - b0 - 1) * orig + 2 * width + orig)
        conv = torch.nn.functional.conv1d(x[None, None], kernel, stride=orig)
        out = conv.transpose(1, 2).reshape(-1)[start - b0 * new : start - b0 * new + count].clone()
    valid = max(0, min(count, target - start))
    out[valid:] = 0
    return out


def _as_waveform(waveform: object, sample_rate: int) -> torch.Tensor:
    """Validate a (T,) or (C, T) float waveform and return it as float32 mono (T,)."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer) or sample_rate <= 0:
        raise InputError(f"sample_rate must be a positive integer in Hz, got {sample_rate!r}.")
    if isinstance(waveform, np.ndarray):
        if not np.issubdtype(waveform.dtype, np.floating):
            raise InputError(
                f"The waveform has dtype {waveform.dtype}; give floats in [-1, 1] "
                "(for int16 PCM divide by 32768)."
            )
        tensor = torch.from_numpy(np.ascontiguousarray(waveform))
    elif isinstance(waveform, torch.Tensor):
        if not waveform.is_floating_point():
            raise InputError(
                f"The waveform has dtype {waveform.dtype}; give floats in [-1, 1] "
                "(for int16 PCM divide by 32768)."
            )
        tensor = waveform.detach().cpu()
    else:
        raise InputError(f"The waveform must be a numpy array or torch tensor, got {type(waveform).__name__}.")
    if tensor.ndim == 1:
        tensor = tensor[None]
    if tensor.ndim != 2:
        raise InputError(f"The waveform must be (T,) or (C, T); got shape {tuple(tensor.shape)}.")
    if tensor.shape[1] == 0:
        raise InputError("The waveform is empty (0 samples).")
    if tensor.shape[0] > tensor.shape[1]:
        raise InputError(
            f"The waveform has shape {tuple(tensor.shape)}: more channels than samples. "
            "Give (C, T); transpose a (T, C) array first."
        )
    tensor = tensor.to(torch.float32)
    if not torch.isfinite(tensor).all():
        raise InputError("The waveform contains NaN or infinite values.")
    peak = float(tensor.abs().max())
    if peak > _PEAK_LIMIT:
        raise InputError(
            f"The waveform peaks at {peak:.3g}, far outside [-1, 1]; scale it (int16 PCM: divide by 32768)."
        )
    # Mono as the official loader does it: the mean over channels.
    return tensor.mean(dim=0) if tensor.shape[0] > 1 else tensor[0]


@lru_cache(maxsize=8)
def _sinc_kernel(orig: int, new: int) -> tuple[torch.Tensor, int]:
    """Hann-windowed sinc polyphase kernel (new, 1, 2*width + orig) for gcd-reduced rates."""
    cutoff = min(orig, new) * ROLLOFF
    width = math.ceil(LOWPASS_FILTER_WIDTH * orig / cutoff)
    taps = torch.arange(-width, width + orig, dtype=torch.float64)[None, None] / orig
    # The output phase offsets are formed in the default float32 and only then widened (as upstream).
    phase = torch.arange(0, -new, -1)[:, None, None] / new
    t = (phase + taps) * cutoff
    t = t.clamp(-LOWPASS_FILTER_WIDTH, LOWPASS_FILTER_WIDTH)
    window = torch.cos(t * math.pi / LOWPASS_FILTER_WIDTH / 2) ** 2
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones((), dtype=t.dtype), t.sin() / t)
    kernel = sinc * (window * (cutoff / orig))
    return kernel.to(torch.float32), width


def resample(waveform: torch.Tensor, orig_rate: int, new_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Band-limited resampling of the last axis from ``orig_rate`` to ``new_rate`` Hz.

    Windowed sinc with a Hann window, 6 zero crossings and a 0.99 roll-off on the gcd-reduced rates
    (torchaudio ``Resample`` defaults), output length ceil(T * new / orig). Float32 in and out.
    """
    if orig_rate == new_rate:
        return waveform
    g = math.gcd(int(orig_rate), int(new_rate))
    orig, new = int(orig_rate) // g, int(new_rate) // g
    if new * (2 * math.ceil(LOWPASS_FILTER_WIDTH * orig / (min(orig, new) * ROLLOFF)) + orig) > _MAX_KERNEL:
        return _resample_soxr(waveform, int(orig_rate), int(new_rate))
    kernel, width = _sinc_kernel(orig, new)
    shape = waveform.shape
    flat = waveform.reshape(-1, shape[-1]).to(torch.float32)
    length = flat.shape[-1]
    padded = torch.nn.functional.pad(flat, (width, width + orig))
    out = torch.nn.functional.conv1d(padded[:, None], kernel, stride=orig)
    out = out.transpose(1, 2).reshape(flat.shape[0], -1)
    target = math.ceil(new * length / orig)
    return out[..., :target].reshape(*shape[:-1], -1)


def _resample_soxr(waveform: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """Rates with a huge gcd-reduced ratio (e.g. 44101 Hz) would need a kernel of gigabytes; soxr's
    very-high-quality resampler is used instead (not bit-identical to the official resampler)."""
    import soxr

    log.warning("resampling %d Hz -> %d Hz with soxr: this rate pair is not the official resampler's", orig_rate, new_rate)
    shape = waveform.shape
    flat = waveform.reshape(-1, shape[-1]).to(torch.float32).numpy()
    target = math.ceil(new_rate * flat.shape[-1] / orig_rate)
    out = np.stack([soxr.resample(ch, orig_rate, new_rate, quality="VHQ") for ch in flat])
    if out.shape[-1] < target:
        out = np.pad(out, ((0, 0), (0, target - out.shape[-1])))
    return torch.from_numpy(np.ascontiguousarray(out[:, :target], dtype=np.float32)).reshape(*shape[:-1], -1)


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = hz / f_sp
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(hz >= min_log_hz, min_log_mel + np.log(np.maximum(hz, 1e-12) / min_log_hz) / logstep, mels)


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(mels >= min_log_mel, min_log_hz * np.exp(logstep * (mels - min_log_mel)), f_sp * mels)


@lru_cache(maxsize=4)
def mel_filterbank(
    sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS, fmin: float = F_MIN, fmax: float = F_MAX
) -> torch.Tensor:
    """Slaney-scale, Slaney-normalised triangular filterbank as a (1 + n_fft/2, n_mels) float32 matrix.

    Filters are triangles between consecutive points of ``n_mels + 2`` mel-spaced frequencies, each
    scaled by 2 / (bandwidth in Hz) so every filter has unit area; the weights are stored in float32.
    """
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, 1 + n_fft // 2)
    mel_pts = np.linspace(_hz_to_mel(np.array(fmin)), _hz_to_mel(np.array(fmax)), n_mels + 2)
    hz_pts = _mel_to_hz(mel_pts)
    widths = np.diff(hz_pts)
    ramps = hz_pts[:, None] - fft_freqs[None, :]
    weights = np.zeros((n_mels, fft_freqs.size), dtype=np.float32)
    for i in range(n_mels):
        rising = -ramps[i] / widths[i]
        falling = ramps[i + 2] / widths[i + 1]
        weights[i] = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (hz_pts[2 : n_mels + 2] - hz_pts[:n_mels]))[:, None]
    return torch.from_numpy(np.ascontiguousarray(weights.T))


@lru_cache(maxsize=1)
def _hann(n: int = N_FFT) -> torch.Tensor:
    return torch.hann_window(n, periodic=True, dtype=torch.float64)


def _segment(mono32k: torch.Tensor, start: int) -> torch.Tensor:
    seg = mono32k[start : start + SEGMENT_SAMPLES]
    if seg.shape[0] < SEGMENT_SAMPLES:
        seg = torch.nn.functional.pad(seg, (0, SEGMENT_SAMPLES - seg.shape[0]))
    return seg


def _mel_of_segments(segments: torch.Tensor) -> torch.Tensor:
    """(W, 320000) float32 segments at 32 kHz -> (W, 1001, 64) float32 log-mels in dB."""
    # float64 STFT keeps the power exact to float32 rounding, so quiet bins match in dB too.
    spec = torch.stft(
        segments.to(torch.float64),
        n_fft=N_FFT,
        hop_length=HOP,
        win_length=N_FFT,
        window=_hann(),
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )
    power = (spec.real**2 + spec.imag**2).to(torch.float32).transpose(1, 2)  # (W, 1001, 513)
    mel = power @ mel_filterbank()
    return 10.0 * torch.log10(torch.clamp(mel, min=AMIN))


def _start_sample(start_seconds: float, length: int) -> int:
    if not math.isfinite(start_seconds) or start_seconds < 0:
        raise InputError(f"start_seconds must be a finite number >= 0, got {start_seconds!r}.")
    start = int(round(start_seconds * SAMPLE_RATE))
    if start > 0 and start >= length:
        raise InputError(
            f"start_seconds={start_seconds:g} is past the end of the recording "
            f"({length / SAMPLE_RATE:.2f} s); choose a start inside it."
        )
    return start


def to_mono_32k(waveform: object, sample_rate: int) -> torch.Tensor:
    """Validated mono float32 waveform at 32 kHz (channels averaged, then resampled)."""
    mono = _as_waveform(waveform, sample_rate)
    return resample(mono, int(sample_rate), SAMPLE_RATE)


def log_mel(waveform: object, sample_rate: int, start_seconds: float = 0.0) -> torch.Tensor:
    """The official (1001, 64) log-mel of one 10-s segment of a waveform.

    ``waveform`` is a numpy array or tensor, (T,) or (C, T), float in [-1, 1], at ``sample_rate`` Hz, or
    an :class:`AudioFile` (only the window's frames are read; ``sample_rate`` is the file's own).
    Channels are averaged, the signal is resampled to 32 kHz, the 10 s from ``start_seconds`` are
    taken (zero-padded on the right when the recording is shorter), and the log-mel is computed:
    STFT (n_fft 1024, hop 320, periodic Hann, centred with reflect padding) -> power -> Slaney mel
    (64 bands, 50–14000 Hz) -> 10·log10(max(., 1e-10)). Returns float32 (1001, 64).
    """
    if isinstance(waveform, AudioFile):
        start = _start_sample(float(start_seconds), waveform.length_32k)
        segment = waveform.mono_32k(start, SEGMENT_SAMPLES)
        waveform.check_heard()
        return _mel_of_segments(segment[None])[0]
    mono = to_mono_32k(waveform, sample_rate)
    start = _start_sample(float(start_seconds), mono.shape[0])
    return _mel_of_segments(_segment(mono, start)[None])[0]


def log_mel_windows(
    waveform: object, sample_rate: int, hop_seconds: float = float(SEGMENT_SECONDS), max_windows: int | None = None
) -> MelWindows:
    """Log-mels of every 10-s window of a long recording, for an embedding averaged over windows.

    Windows start every ``hop_seconds`` (default 10: back to back). When the recording is longer
    than 10 s, the last window is aligned to the end of the recording instead of being mostly
    zero padding; a recording of 10 s or less gives one zero-padded window (as :func:`log_mel`).
    ``max_windows`` caps the count, spreading the chosen windows evenly over the recording.
    """
    if not math.isfinite(hop_seconds) or hop_seconds <= 0:
        raise InputError(f"hop_seconds must be > 0, got {hop_seconds!r}.")
    if max_windows is not None and max_windows < 1:
        raise InputError(f"max_windows must be at least 1, got {max_windows!r}.")
    lazy = waveform if isinstance(waveform, AudioFile) else None
    mono = None if lazy is not None else to_mono_32k(waveform, sample_rate)
    length = lazy.length_32k if lazy is not None else int(mono.shape[0])  # type: ignore[union-attr]
    hop = max(1, int(round(hop_seconds * SAMPLE_RATE)))
    if length <= SEGMENT_SAMPLES:
        starts = [0]
    else:
        last = length - SEGMENT_SAMPLES
        starts = list(range(0, last, hop))
        if not starts or starts[-1] != last:
            starts.append(last)
    if max_windows is not None and len(starts) > max_windows:
        picks = np.linspace(0, len(starts) - 1, max_windows).round().astype(int)
        starts = [starts[i] for i in sorted(set(picks.tolist()))]
    mels = []
    batch = 8  # bound the float64 STFT's memory on hour-long recordings
    for i in range(0, len(starts), batch):
        if lazy is not None:  # each window read and resampled on its own
            segs = torch.stack([lazy.mono_32k(s, SEGMENT_SAMPLES) for s in starts[i : i + batch]])
        else:
            assert mono is not None
            segs = torch.stack([_segment(mono, s) for s in starts[i : i + batch]])
        mels.append(_mel_of_segments(segs))
    if lazy is not None:
        lazy.check_heard()
    return MelWindows(mels=torch.cat(mels), starts_seconds=tuple(s / SAMPLE_RATE for s in starts))
