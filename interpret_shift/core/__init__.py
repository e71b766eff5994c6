"""The core: adapters, hooks, weights, subjects, records, prompts, views and the method contract."""
