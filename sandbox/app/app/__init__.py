"""ai-doc-qa backend."""
