"""Stand-ins the unit tests share: paging through botocore's own paginator, with the
service's paging model, over a stand-in's method (as a real client's ``get_paginator`` gives
it); a Lambda client with or without asynchronous settings; a source file with given
metadata."""

import os
from unittest import mock

import botocore.paginate
import botocore.session
from botocore import xform_name
from botocore.exceptions import ClientError

_SESSION = botocore.session.get_session()


def botocore_paginator(service, operation, method):
    """botocore's paginator for ``service``'s ``operation`` (snake_case), calling ``method``."""
    model = _SESSION.get_service_model(service)
    name = next(candidate for candidate in model.operation_names if xform_name(candidate) == operation)
    config = _SESSION.get_paginator_model(service).get_paginator(name)
    return botocore.paginate.Paginator(method, config, model.operation_model(name))


class Paged:
    """Mixin for a stand-in client of ``SERVICE``: ``get_paginator`` pages its own methods."""

    SERVICE = "ec2"

    def get_paginator(self, operation):
        return botocore_paginator(self.SERVICE, operation, getattr(self, operation))


def not_found():
    """Lambda's answer for a function, configuration or policy that is not there."""
    return ClientError({"Error": {"Code": "ResourceNotFoundException", "Message": "nope"}}, "Get")


def lambda_with(config=None, reserved=None):
    """A Lambda client whose function has the asynchronous settings ``config`` (none: not
    found) and the reserved concurrency ``reserved`` (none: unreserved)."""
    client = mock.MagicMock()
    client.get_function_concurrency.return_value = (
        {} if reserved is None else {"ReservedConcurrentExecutions": reserved}
    )
    if config is None:
        client.get_function_event_invoke_config.side_effect = not_found()
    else:
        client.get_function_event_invoke_config.return_value = config
    return client


def write_source(path, text, mtime=None, mode=0o644):
    """A source file with the given contents, modification time and mode; its path."""
    path.write_text(text)
    os.chmod(path, mode)
    if mtime:
        os.utime(path, (mtime, mtime))
    return str(path)
