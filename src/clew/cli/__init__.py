"""The command line: one small module per command. Engines return data; commands format and print."""
