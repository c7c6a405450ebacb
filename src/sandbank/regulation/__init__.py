"""The regulatory layer (paper §3.2, §3.4; checklist 32, 33, 36, 46–51, 54): the institutions
of an agent economy, each a mechanism (kernel/mechanism.py) configured by its own scenario
section — anti-monopoly levies and caps (`antimonopoly.py`), insurance (`insurance.py`),
federation (`federation.py`), entry certification and disclosure (`certification.py`),
proof of personhood (`personhood.py`) — and liability attribution (`liability.py`).
docs/regulation.md says what each does and what it does not model."""
