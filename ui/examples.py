"""Example prompts: beginnings of Python code, the kind of text the default model was trained on (stdlib)."""

EXAMPLE_PROMPTS = {
    "fibonacci": 'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n    ',
    "read lines": "import os\n\n\ndef read_lines(path):\n    with open(path, encoding=\"utf-8\") as f:\n        ",
    "class Stack": "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n        ",
    "argparse": "import argparse\n\n\ndef parse_args(argv=None):\n    parser = argparse.ArgumentParser(",
    "loop": "for index, line in enumerate(lines):\n    if not line.strip():\n        ",
}

DEFAULT_PROMPT = EXAMPLE_PROMPTS["fibonacci"]
