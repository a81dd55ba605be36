"""The annotation gateway: the browser UI's HTTP/JSON API in front of the trainer and
feature services, plus the static UI itself (web/)."""
