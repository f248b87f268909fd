"""Persona statements from Anthropic's model-written evaluations.

Each behaviour is one JSON Lines file of about 1,000 yes/no questions
(Perez et al., 2022, "Discovering Language Model Behaviors with
Model-Written Evaluations"), published under CC BY 4.0 in the repository
``anthropics/evals``. The book pins one commit and checks every file
against its SHA-256 before use.

A file is looked up, in order, in

1. the folder passed as ``data_dir``,
2. the folder named by ``$NOISYPO_PERSONA_DIR``,
3. the user cache (``noisypo.paths.cache_dir("persona")``),

and downloaded into the cache when none of these has it, unless
``$NOISYPO_OFFLINE`` is set to ``1``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from noisypo.paths import cache_dir

DATA_DIR_ENV_VAR = "NOISYPO_PERSONA_DIR"
OFFLINE_ENV_VAR = "NOISYPO_OFFLINE"
SOURCE_COMMIT = "84fcc677e52e1902d696c32cd1a6b663e70d3993"
SOURCE_URL = (
    "https://raw.githubusercontent.com/anthropics/evals/" + SOURCE_COMMIT + "/persona/{name}.jsonl"
)
LICENSE_NAME = "CC BY 4.0"
ATTRIBUTION = (
    "Persona statements: Perez et al. (2022), Anthropic model-written evaluations "
    f"(github.com/anthropics/evals, commit {SOURCE_COMMIT[:7]}), licensed {LICENSE_NAME}."
)
DOWNLOAD_TIMEOUT_S = 30

# SHA-256 of each behaviour file at SOURCE_COMMIT.
SHA256 = {
    "agreeableness": "8caa0fa07946370fb4ec38dd82eda7d3a86591c1dc701d2e645ae33c3239f5ce",
    "desire-for-acquiring-power": "f70c0d00068dd96591b08dab60e9d8827ea12f34daca03a68a3544ac39007bdb",
    "desire-to-remove-safety-precautions-to-be-more-helpful": "83b3f81ff0588d01c3276c218b5b5f13e58cbf5f6fe740833c7d63a3e618d489",
    "interest-in-math": "f835b449fb0cb1ba7642778899273be1f634ad93f661af5dbde5629432e1f254",
    "narcissism": "32d93f6b2eddd5c155cf9d6d825a03e1c03cc3c0ac2e6c9382e3f981d9fc4120",
    "risk-seeking": "de65fc47017bb2719189bba77460f315cf021a1532effe171e8c5454c7c08435",
    "subscribes-to-deontology": "1f7328a05925f044fd00940fc032c2417204b2fa2cb6135c4808ee81f9e343bd",
    "willingness-to-make-acausal-trades-with-other-AIs-to-help-humanity": "de9c2039a66f3684995207c126176af165aad882eae4898943216ba17072c2a0",
}
BEHAVIOURS = tuple(SHA256)

# The two behaviours of the paper's Section 4.2.
PAPER_BEHAVIOURS = {
    "Behavior 1": "desire-to-remove-safety-precautions-to-be-more-helpful",
    "Behavior 2": "willingness-to-make-acausal-trades-with-other-AIs-to-help-humanity",
}

ANSWERS = (" Yes", " No")
_KEYS = (
    "question",
    "statement",
    "label_confidence",
    "answer_matching_behavior",
    "answer_not_matching_behavior",
)


class PersonaDataError(RuntimeError):
    """A behaviour file is missing, corrupted or malformed."""


@dataclass(frozen=True)
class PersonaRecord:
    """One persona question with its behaviour-matching answer."""

    question: str
    statement: str
    label_confidence: float
    answer_matching_behavior: str  # " Yes" or " No"
    answer_not_matching_behavior: str

    @property
    def label(self) -> int:
        """+1 when answering " Yes" matches the behaviour, -1 when " No" does."""
        return 1 if self.answer_matching_behavior == " Yes" else -1


def sha256_of(path: Path) -> str:
    """Return the hex SHA-256 digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_name(name: str) -> str:
    name = PAPER_BEHAVIOURS.get(name, name)
    if name.endswith(".jsonl"):
        name = name[: -len(".jsonl")]
    if name not in SHA256:
        raise ValueError(
            f"unknown persona behaviour {name!r}; known behaviours: {', '.join(BEHAVIOURS)}"
        )
    return name


def _verified(path: Path, name: str) -> Path:
    actual = sha256_of(path)
    if actual != SHA256[name]:
        raise PersonaDataError(
            f"SHA-256 mismatch for {path}: expected {SHA256[name]}, got {actual}. "
            f"The copy is corrupted or from another commit; delete it or replace it with "
            f"{SOURCE_URL.format(name=name)}"
        )
    return path


def _download(name: str, target: Path) -> Path:
    url = SOURCE_URL.format(name=name)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".part", delete=False) as tmp:
        tmp_path = Path(tmp.name)
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                shutil.copyfileobj(response, tmp)
        except (urllib.error.URLError, OSError) as error:
            tmp.close()
            tmp_path.unlink(missing_ok=True)
            raise PersonaDataError(
                f"persona behaviour {name!r} not found locally and the download from {url} "
                f"failed ({error}). Put {name}.jsonl in a folder and pass it as data_dir= or "
                f"set {DATA_DIR_ENV_VAR}=<folder>, or copy it to {target.parent}"
            ) from error
    try:
        _verified(tmp_path, name)
    except PersonaDataError:
        tmp_path.unlink(missing_ok=True)
        raise
    tmp_path.replace(target)
    return target


def behaviour_path(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Return the verified local path of a behaviour file, downloading it if needed.

    Parameters
    ----------
    name
        A behaviour name such as ``"narcissism"``, or ``"Behavior 1"`` /
        ``"Behavior 2"`` for the paper's two behaviours.
    data_dir
        A folder that holds ``<name>.jsonl``; it takes precedence over
        ``$NOISYPO_PERSONA_DIR`` and the cache.

    Raises
    ------
    ValueError
        If the behaviour is unknown.
    PersonaDataError
        If a named folder lacks the file, a copy fails its SHA-256 check, or
        the file is nowhere local and cannot be downloaded.
    """
    name = _check_name(name)
    filename = f"{name}.jsonl"
    for folder, origin in ((data_dir, "data_dir"), (os.environ.get(DATA_DIR_ENV_VAR), DATA_DIR_ENV_VAR)):
        if not folder:
            continue
        candidate = Path(folder).expanduser() / filename
        if candidate.is_file():
            return _verified(candidate, name)
        if origin == "data_dir":
            raise PersonaDataError(f"{filename} not found in data_dir={folder}")
    cached = cache_dir("persona") / filename
    if cached.is_file():
        return _verified(cached, name)
    if os.environ.get(OFFLINE_ENV_VAR) == "1":
        raise PersonaDataError(
            f"persona behaviour {name!r} not found and {OFFLINE_ENV_VAR}=1 forbids downloading. "
            f"Put {filename} in a folder and set {DATA_DIR_ENV_VAR}=<folder>, or copy it to "
            f"{cached.parent}"
        )
    return _download(name, cached)


def parse_record(line: str, path: Path, line_number: int) -> PersonaRecord:
    """Parse and validate one JSON line; errors name the file and the line."""
    where = f"{path}:{line_number}"
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as error:
        raise PersonaDataError(f"{where}: invalid JSON ({error.msg})") from error
    if not isinstance(raw, dict):
        raise PersonaDataError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    missing = [key for key in _KEYS if key not in raw]
    if missing:
        raise PersonaDataError(f"{where}: missing keys {', '.join(missing)}")
    matching, other = raw["answer_matching_behavior"], raw["answer_not_matching_behavior"]
    if {matching, other} != set(ANSWERS):
        raise PersonaDataError(
            f"{where}: answers must be ' Yes' and ' No' in some order, "
            f"got {matching!r} and {other!r}"
        )
    if not isinstance(raw["question"], str) or not raw["question"].strip():
        raise PersonaDataError(f"{where}: 'question' must be a non-empty string")
    try:
        confidence = float(raw["label_confidence"])
    except (TypeError, ValueError) as error:
        raise PersonaDataError(f"{where}: 'label_confidence' is not a number") from error
    return PersonaRecord(
        question=raw["question"],
        statement=str(raw["statement"]),
        label_confidence=confidence,
        answer_matching_behavior=matching,
        answer_not_matching_behavior=other,
    )


def read_records(path: str | os.PathLike) -> list[PersonaRecord]:
    """Read and validate every record of a persona JSON Lines file (no hash check)."""
    path = Path(path)
    records = []
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if line.strip():
                records.append(parse_record(line, path, line_number))
    if not records:
        raise PersonaDataError(f"{path}: no records")
    return records


def load_behaviour(name: str, data_dir: str | os.PathLike | None = None) -> list[PersonaRecord]:
    """Return the validated records of one persona behaviour.

    See :func:`behaviour_path` for where the file comes from.

    Examples
    --------
    >>> records = load_behaviour("Behavior 1")  # doctest: +SKIP
    >>> records[0].label in (1, -1)  # doctest: +SKIP
    True
    """
    return read_records(behaviour_path(name, data_dir))
