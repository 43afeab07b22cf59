"""The configuration: spf-milter.yaml and the policy, read into frozen values.

The public names are re-exported here: the model (model.py), the loaders
(daemonfile.py, policyfile.py) and ConfigError (problems.py). Below them,
fields.py reads typed values from the marked nodes of yamlnodes.py, the one
module that imports ``yaml``. Importing this package loads no DNS client,
event loop or metrics code: consumers that only need values stay light.
"""

from spf_milter.config.daemonfile import load_all, load_config
from spf_milter.config.endpoints import parse_nameserver, parse_socket
from spf_milter.config.model import (
    Configuration,
    DaemonConfig,
    DnsConfig,
    HeaderConfig,
    InetSocket,
    LogConfig,
    LogDestination,
    LogLevel,
    MetricsConfig,
    Nameserver,
    OnError,
    Socket,
    SyslogFacility,
    UnixSocket,
)
from spf_milter.config.policyfile import load_policy
from spf_milter.config.problems import EX_CONFIG, ConfigError, ConfigProblem

__all__ = [
    "EX_CONFIG",
    "ConfigError",
    "ConfigProblem",
    "Configuration",
    "DaemonConfig",
    "DnsConfig",
    "HeaderConfig",
    "InetSocket",
    "LogConfig",
    "LogDestination",
    "LogLevel",
    "MetricsConfig",
    "Nameserver",
    "OnError",
    "Socket",
    "SyslogFacility",
    "UnixSocket",
    "load_all",
    "load_config",
    "load_policy",
    "parse_nameserver",
    "parse_socket",
]
