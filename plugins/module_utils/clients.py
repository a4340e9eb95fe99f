# -*- coding: utf-8 -*-
# Copyright: guardrails.ec2 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""A module's AWS clients, all from one boto3 session.

amazon.aws's ``AnsibleAWSModule.client`` opens a new boto3 session for every client, and each
new session loads botocore's index of services and the service's model afresh: the seven
clients of one region's read cost about 0.5 s of the module's run on a small machine, more
than its calls. ``session_clients`` takes the same settings (``get_aws_connection_info``:
region, endpoint, credentials, profile, ``aws_config``), the same user agent and the same
retry wrapper, and opens one session for all of a module's clients, so each model is loaded
once.
"""

try:
    import boto3
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible_collections.amazon.aws.plugins.module_utils import botocore as aws_botocore
from ansible_collections.amazon.aws.plugins.module_utils.retries import RetryingBotoClientWrapper


def _config(params):
    """The botocore Config of amazon.aws's connections: its user agent, then the module's
    ``config`` and ``aws_config``, as ``boto3_conn`` merges them."""
    user_agent = getattr(aws_botocore, "_get_user_agent_string", None)
    config = (
        botocore.config.Config() if user_agent is None else botocore.config.Config(user_agent=user_agent())
    )
    for key in ("config", "aws_config"):
        extra = params.pop(key, None)
        if extra:
            config = config.merge(
                extra if isinstance(extra, botocore.config.Config) else botocore.config.Config(**extra)
            )
    return config


def session_clients(module, services, retry_decorator):
    """``{service: client}`` for ``services``, from one session, each wrapped with
    ``retry_decorator`` (calls pass ``aws_retry=True``). Fails the module as ``module.client``
    would when there is no region or the settings are wrong."""
    region, endpoint_url, params = aws_botocore.get_aws_connection_info(module)
    params = dict(params)
    profile = params.pop("profile_name", None)
    try:
        config = _config(params)
        session = boto3.session.Session(profile_name=profile)
        aws_botocore.enable_placebo(session)
        made = {
            service: session.client(
                service, config=config, region_name=region, endpoint_url=endpoint_url, **params
            )
            for service in services
        }
    except botocore.exceptions.NoRegionError:
        module.fail_json(
            msg=f"The {module._name} module requires a region and none was found in configuration, "
            "environment variables or module parameters"
        )
    except (ValueError, botocore.exceptions.BotoCoreError) as exc:
        module.fail_json_aws(exc, msg="Couldn't connect to AWS")
    return {service: RetryingBotoClientWrapper(client, retry_decorator) for service, client in made.items()}
