# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""The values that stand for "none" in a region's state: the reader (``resource_reads``)
returns them, ``render`` plans with them and ``drift`` compares against them.

Kept apart from the reader so that the pure steps (render, drift, the filters) import no
AWS SDK: a controller task that plans or compares loads neither boto3 nor botocore.
"""

# A function without reserved concurrency (GetFunctionConcurrency answers without a value).
UNRESERVED = -1


def missing_metric_filter():
    """The state of a metric filter that does not exist."""
    return {"count": 0, "name": None, "pattern": None, "transformation": {}}
