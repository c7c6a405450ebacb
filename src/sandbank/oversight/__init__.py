"""Monitoring and oversight: risk indicators, detectors, breakers, forensics.

Oversight reads the committed events of each tick (and, read-only, the economy's state) and
acts only by submitting overseer actions (`controls/controls.py`) under its own monitor
identity — through the same sequencer and into the same log as everything else.
"""
