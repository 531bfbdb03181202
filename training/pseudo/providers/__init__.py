"""Chat providers a VLM teacher runs on (Gemini, any OpenAI-compatible server), behind one
interface: :class:`training.pseudo.providers.base.ChatProvider`."""
