from cli.common import Command
COMMANDS = []
