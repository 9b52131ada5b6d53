"""What people use: the CLI, the chat, the HTML report, the trace view and the web app. The top
layer: it may import every layer below it, and nothing imports it."""
