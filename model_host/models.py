"""The models behind each stage, loaded once per host process; every call is blocking.

English stt and the IVR phrase match use the English Whisper; lid and stt in other languages
the multilingual one; speech presence is the Silero VAD inside faster-whisper; denoise is
spectral gating (noisereduce).
"""

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import noisereduce
from faster_whisper import WhisperModel
from faster_whisper.vad import VadOptions, get_speech_timestamps

from model_host import dtmf
from model_host.api import DenoiseAnswer, IvrAnswer, LidAnswer, ModelRequest, SttAnswer
from model_host.audio import MODEL_RATE, Audio, output_path, read_audio, write_wav
from model_host.ivr import IvrEvidence, decide, matched_phrases
from model_host.settings import HostSettings
from model_host.weights import english_model, multilingual_model


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


@dataclass
class Models:
    settings: HostSettings
    english: WhisperModel
    multilingual: WhisperModel
    english_name: str
    multilingual_name: str

    @classmethod
    def load(cls, settings: HostSettings) -> "Models":
        en_dir, multi_dir = english_model(settings), multilingual_model(settings)

        def whisper(folder: Path) -> WhisperModel:
            return WhisperModel(
                str(folder),
                device="cpu",
                compute_type=settings.compute_type,
                cpu_threads=settings.cpu_threads,
                num_workers=settings.workers,
                local_files_only=True,
            )

        return cls(
            settings,
            whisper(en_dir),
            whisper(multi_dir),
            f"whisper {en_dir.name} ({en_dir})",
            f"whisper {multi_dir.name} ({multi_dir})",
        )

    def denoise(self, request: ModelRequest) -> DenoiseAnswer:
        audio = read_audio(request.audio_uri)
        # Stationary gating, not quite to silence: the non-stationary default ate the
        # synthetic Spanish voice (Whisper base then heard one word, repeated).
        cleaned = noisereduce.reduce_noise(
            y=audio.samples,
            sr=audio.rate,
            stationary=True,
            prop_decrease=self.settings.denoise_strength,
            n_jobs=1,
        )
        out = output_path(self.settings.denoised_dir, request.batch_id, request.file_name)
        write_wav(out, Audio(cleaned.astype("float32"), audio.rate))
        return DenoiseAnswer(
            denoised_uri=out.resolve().as_uri(),
            duration_s=round(audio.seconds, 3),
            sample_rate=audio.rate,
            model=f"noisereduce {_version('noisereduce')} stationary spectral gating",
        )

    def speech_seconds(self, samples16k: Audio) -> float:
        spans = get_speech_timestamps(
            samples16k.samples, VadOptions(min_silence_duration_ms=300, speech_pad_ms=100)
        )
        return float(sum(s["end"] - s["start"] for s in spans)) / MODEL_RATE

    def _transcribe(self, audio: Audio, language: str | None) -> tuple[str, str]:
        # Without a language the multilingual model finds it; tiny.en would force English.
        model = self.english if language == "en" else self.multilingual
        segments, info = model.transcribe(
            audio.at(MODEL_RATE),
            language=language,
            beam_size=self.settings.beam_size,
            vad_filter=True,
            condition_on_previous_text=False,
            # No fallback to sampling: on speech it cannot read (a robotic voice, a language
            # the model does not know) the fallback loops for many times the call's length.
            temperature=0.0,
        )
        text = " ".join(s.text.strip() for s in segments).strip()
        return text, str(info.language)

    def ivr(self, request: ModelRequest) -> IvrAnswer:
        audio = read_audio(request.audio_uri).head(self.settings.ivr_window_s)
        head16 = Audio(audio.at(MODEL_RATE), MODEL_RATE)
        keys = dtmf.decode(audio.at(dtmf.RATE))
        speech_s = self.speech_seconds(head16)
        text = ""
        if speech_s > 0:
            text, _ = self._transcribe(head16, "en")
        evidence = IvrEvidence(
            dtmf=keys,
            speech_s=speech_s,
            window_s=audio.seconds,
            phrases=matched_phrases(text, self.settings.ivr_phrases),
        )
        is_ivr, reasons = decide(evidence)
        return IvrAnswer(
            is_ivr=is_ivr,
            reasons=reasons,
            dtmf=keys,
            speech_s=round(speech_s, 2),
            window_s=round(audio.seconds, 2),
            phrases=evidence.phrases,
            head_transcript=text,
        )

    def lid(self, request: ModelRequest) -> LidAnswer:
        audio = read_audio(request.audio_uri).head(self.settings.lid_window_s)
        language, probability, ranked = self.multilingual.detect_language(audio.at(MODEL_RATE))
        allowed = self.settings.lid_languages
        if allowed:
            # The call centre's languages only: the likeliest of them wins.
            language, probability = max(
                ((code, p) for code, p in ranked if code in allowed),
                key=lambda cp: cp[1],
                default=(language, probability),
            )
        return LidAnswer(
            language=str(language),
            confidence=round(float(probability), 3),
            model=self.multilingual_name,
        )

    def stt(self, request: ModelRequest) -> SttAnswer:
        audio = read_audio(request.audio_uri)
        language = request.inputs.language or None
        text, heard = self._transcribe(audio, language)
        model = self.english_name if language == "en" else self.multilingual_name
        return SttAnswer(
            transcript=text, language=heard, audio_s=round(audio.seconds, 3), model=model
        )
