"""The web pages served by the gateway itself: customer chat, agent console, admin dashboard."""
