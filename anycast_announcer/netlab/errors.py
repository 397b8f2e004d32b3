"""Errors of the lab runner, split by whose fault they are."""

from __future__ import annotations


class NetlabError(Exception):
    """Base class: the CLI prints these as one line and exits with status 2."""


class TopologyError(NetlabError):
    """The topology file is missing, malformed or asks for something we cannot build."""


class LabError(NetlabError):
    """The lab could not be deployed, inspected or used on this host."""
