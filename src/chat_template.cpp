// placeholder: filled by the chat_template work
