"""filejobs: run one command over many files with S3, SQS and EC2 Auto Scaling.

Imports go one way: the pure wire formats (``message``, ``records``) <- the AWS edge (``aws``,
``transfer``, ``crt`` (the optional AWS CRT), ``batching``, ``events``, ``runner``) <- the libraries
(``send``, ``worker``, ``ops``) <- the CLIs (``sendjobs.py``, ``getjobs.py``, ``filejobs.cli``).
Test and benchmark tooling lives in ``testing/`` and ``bench/``, outside the package.
"""

__version__ = "1.1.0"
