"""The JupyterLab bridge: the registry of live objects, the comm protocol, and the bridge that
serves the extension from a kernel. It subscribes to the library's events; nothing in the
library imports it.

    registry   live systems, objectives, runs and fits, with change notifications
    feed       the library's events written into the registry
    schema     the messages the extension may send, and their check
    bridge     the comm: answers requests, pushes changes, `activate()` inside a kernel
"""

from .bridge import LabBridge as LabBridge
from .bridge import activate as activate
from .bridge import capabilities as capabilities
from .bridge import environment_status as environment_status
from .bridge import lab_defaults as lab_defaults
from .bridge import set_compiling as set_compiling
from .registry import Registry as Registry
from .registry import default_registry as default_registry
