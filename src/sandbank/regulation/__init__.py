"""The regulatory layer (paper §3.4; checklist 46–51): the institutions of an agent
economy, each a mechanism (kernel/mechanism.py) configured by its own scenario section.
Anti-monopoly levies and caps (`antimonopoly.py`) and insurance (`insurance.py`) are
here; docs/regulation.md says what each does and what it does not model."""
