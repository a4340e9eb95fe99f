"""LocalStack lifecycle hooks of the harness."""

from localstack.runtime import hooks


@hooks.on_infra_start()
def enforce_iam():
    """Evaluate IAM for IAM users and role sessions (``GUARDRAILS_ENFORCE_IAM=1``)."""
    from guardrails_localstack.iam import install

    install()


@hooks.on_infra_start()
def match_log_patterns():
    """Metric filters match only what their pattern says (LocalStack matches everything)."""
    from guardrails_localstack.log_patterns import install

    install()


@hooks.on_infra_start()
def forget_tags_of_deleted_log_groups():
    """A deleted log group takes its tags with it (LocalStack keeps them for the next one)."""
    from guardrails_localstack.logs import install

    install()


@hooks.on_infra_shutdown()
def stop_lambda_processes():
    """Stop every local Lambda process before LocalStack exits.

    Deleting a function right before shutdown can leave its environments running; this
    makes sure none outlives the emulator.
    """
    from guardrails_localstack.executor import stop_all_executors

    stop_all_executors()


@hooks.on_infra_start()
def limit_function_policies():
    """A function's resource policy holds at most 20 KB, as on AWS (LocalStack has no limit)."""
    from guardrails_localstack.lambda_limits import install

    install()


@hooks.on_infra_start()
def evaluate_alarms_as_often_as_cloudwatch():
    """Alarms are evaluated every minute (LocalStack: once per evaluation range)."""
    from guardrails_localstack.alarms import install

    install()


@hooks.on_infra_start()
def publish_cloudtrail_events():
    """The calls that disarm a deployment reach EventBridge as CloudTrail events (LocalStack: none)."""
    from guardrails_localstack.cloudtrail import install

    install()


@hooks.on_infra_start()
def size_async_invoker_pools():
    """``GUARDRAILS_LAMBDA_ASYNC_WORKERS``: how many asynchronous invocations of one function
    run at once (LocalStack: a thread pool of ``min(32, cores + 4)``, 6 on 2 cores; AWS:
    up to the account's concurrency, or the function's reserved concurrency)."""
    from guardrails_localstack.executor import size_async_invoker_pools

    size_async_invoker_pools()
