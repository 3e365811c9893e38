"""Custom actions with rasa-sdk (issue 15): forms, slots and action calls for the pipeline.

`settings` (the `actions:` config section), `protocol` (the action-server request and response),
`runners` (in-process ActionExecutor or a remote action server), `service` (the pipeline hook).
rasa-sdk itself is imported only when in-process actions are loaded.
"""
