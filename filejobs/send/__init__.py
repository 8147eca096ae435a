"""sendjobs' library: walk → plan → upload → batch → send → journal."""

from .sender import FatalSendError, SendConfig, Sender
from .summary import SendSummary

__all__ = ["FatalSendError", "SendConfig", "Sender", "SendSummary"]
