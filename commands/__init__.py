"""Pure command builders and output parsers: no SSH, no fabric or invoke imports.

Each builder returns one shell string that an operator could paste into an SSH session on the
host (``cd`` included); each parser takes the text a real tool printed.
"""
