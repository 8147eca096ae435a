"""filejobs: run one command over many files with S3, SQS and EC2 Auto Scaling.

Import direction: ``message`` (pure) <- ``aws``/``transfer`` <- ``submit``/``worker``/``status``
<- the CLIs (``sendjobs.py``, ``getjobs.py``, ``filejobs.cli``).
"""

__version__ = "1.0.0"
