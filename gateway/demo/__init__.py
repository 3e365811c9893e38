"""The demo shop behind `make run`: a fake shop API and the rasa-sdk actions that query it."""
