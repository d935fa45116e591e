"""All configuration, from environment variables: one pydantic-settings class per process,
built by that process's bootstrap and passed in explicitly.

| class | read by | module |
|---|---|---|
| `GatewaySettings` | `python -m gateway`, `taskproc gateway` | gateway.py |
| `WorkerSettings` | `python -m consumers worker TYPE`, `taskproc worker TYPE` | worker.py |
| `ProjectorSettings` | `python -m projector`, `taskproc projector` | projector.py |
| `SchedulerSettings` | `python -m scheduler`, `taskproc scheduler` | scheduler.py |
| `KeysVerbSettings` | `taskproc keys` | cli.py |
| `StoreVerbSettings` | `taskproc read-model` | cli.py |
| `BrokerAdminSettings` | `taskproc topology`, `taskproc rabbitmq setup` | cli.py |
| `DeadLetterVerbSettings` | `taskproc dead-letters` | cli.py |
| `ServicesVerbSettings` | `taskproc services` | cli.py |
| `SystemSettings` | `taskproc run` (all of the above) | system.py |

They are assembled from mixins, each field defined once: `CommonSettings` (profile, logging),
`NamedProcess`, `MetricsSettings` (common.py); `MongoSettings`, `RetentionSettings`,
`RabbitMQSettings`, `QueueLimitSettings`, `TenantSettings`, `ConnectedSettings`,
`TaskServiceSettings`
(connections.py); `TaskLimitSettings` (tasks.py); `GatewayAddress`, `ApiKeySettings`
(gateway.py); `SmtpSettings` (worker.py). docs/configuration.md says which process reads which
variable; tests/unit/test_settings_classes.py checks it against these classes.
"""
