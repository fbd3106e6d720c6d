"""The core both paths share: settings, names of keys, queues and tasks, the payload, states,
errors and URLs. Imports nothing from the write path, the read path or the surfaces."""
