"""Dependency injection: the service container and its scopes (see docs/di.md).

`Container` is the public entry; the modules behind it each hold one job: `bindings`
(registration, choice by priority and pins), `graph` (providers, pools, scope checks,
validation), `inject` (constructor injection), `plans` (reading signatures), `teardown`,
`errors` (the error kinds, with their fields).
"""

from host.di.bindings import BindingInfo, LoadedPluginLike
from host.di.container import Container

__all__ = ["BindingInfo", "Container", "LoadedPluginLike"]
