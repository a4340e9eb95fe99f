"""Stand-in clients' paging: botocore's own paginator, with the service's paging model, over
a stand-in's method, as a real client's ``get_paginator`` gives it."""

import botocore.paginate
import botocore.session
from botocore import xform_name

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
