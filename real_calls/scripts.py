"""The calls' scripts: who says what, in which language, and which keys are pressed (data)."""

from dataclasses import dataclass

# A turn: (speaker, text); speaker "agent" or "caller" (two piper speeds), or "keys:<digits>"
# for DTMF presses instead of speech.
Turn = tuple[str, str]


@dataclass(frozen=True)
class CallScript:
    name: str
    language: str  # ISO 639-1, what lid should answer
    ivr: bool  # what ivr should answer
    turns: tuple[Turn, ...]
    snr_db: float = 20.0
    keywords: tuple[str, ...] = ()  # words the transcript must hold (the e2e test checks them)

    @property
    def text(self) -> str:
        """What is said, in order: the reference for the word error rate."""
        return " ".join(t for who, t in self.turns if not who.startswith("keys:"))


def _conversation(name: str, snr_db: float, keywords: tuple[str, ...], *lines: str) -> CallScript:
    turns = tuple(("agent" if i % 2 == 0 else "caller", line) for i, line in enumerate(lines))
    return CallScript(name, "en", False, turns, snr_db, keywords)


def _menu(name: str, snr_db: float, *items: str) -> CallScript:
    """Menu prompts, and `keys:<digits>` items for the caller's key presses between them."""
    turns = tuple((item, "") if item.startswith("keys:") else ("agent", item) for item in items)
    return CallScript(name, "en", True, turns, snr_db)


CALLS: tuple[CallScript, ...] = (
    _conversation(
        "en-refund", 20, ("support", "package", "damaged"),
        "Thank you for calling customer support, my name is Joe. How can I help you today?",
        "Hi, I would like a refund for my last order. The package arrived damaged.",
        "I am sorry to hear that. I have started the refund, it will reach your card in five days.",
    ),
    _conversation(
        "en-billing", 15, ("charged", "twice"),
        "Good morning, billing department, how may I help you?",
        "I was charged twice for my monthly subscription and I want the extra payment back.",
        "I can see both payments. I will cancel the second one right now.",
    ),
    _conversation(
        "en-internet", 20, ("internet", "router"),
        "Technical support, this is Joe speaking.",
        "My internet connection keeps dropping every evening since Monday.",
        "Let us restart your router. Please unplug it, wait ten seconds and plug it back in.",
    ),
    _conversation(
        "en-address", 25, ("address",),
        "Hello, thanks for calling. What can I do for you?",
        "I moved last week and I need to change the address on my account.",
        "No problem. Please tell me your new street address and postal code.",
    ),
    _conversation(
        "en-password", 15, ("password",),
        "Welcome to the help desk. How can I help?",
        "I forgot my password and the reset email never arrives.",
        "I will send a new reset link to your phone instead. Please check your messages.",
    ),
    _conversation(
        "en-delivery", 20, ("delivery",),
        "Thank you for calling. Can I have your order number please?",
        "It is four five seven two. The delivery was supposed to come yesterday.",
        "Your delivery is delayed at the warehouse. It will arrive tomorrow morning.",
    ),
    _conversation(
        "en-cancel", 10, ("cancel",),
        "Hello, you are speaking with Joe from the accounts team.",
        "I want to cancel my phone plan at the end of this month.",
        "I understand. Before I cancel it, may I offer you a cheaper plan?",
    ),
    _conversation(
        "en-upgrade", 20, ("upgrade",),
        "Good afternoon, sales team. How can I help you?",
        "I would like to upgrade to the premium plan with more data.",
        "Great choice. The upgrade starts today and costs ten dollars more each month.",
    ),
    _conversation(
        "en-complaint", 15, ("manager",),
        "Customer care, how can I help you today?",
        "This is the third time I call about the same problem. I want to speak to a manager.",
        "I apologize. I will transfer you to my manager right away.",
    ),
    _conversation(
        "en-appointment", 25, ("appointment",),
        "Hello, this is the clinic. How can I help?",
        "I need to move my appointment from Tuesday to Thursday afternoon.",
        "Thursday at three o'clock is free. I have booked it for you.",
    ),
    _conversation(
        "en-balance", 20, ("balance",),
        "Thank you for calling the bank. How can I help you?",
        "Could you please tell me the balance of my savings account?",
        "Of course. After I verify your identity, I will read you the balance.",
    ),
    _conversation(
        "en-noisy", 5, ("payment",),
        "Hello, payments team, how can I help?",
        "My card payment was declined at the store this morning.",
        "Let me check. The payment was blocked for security. I have unblocked your card.",
    ),
    _menu(
        "ivr-main-menu", 20,
        "Thank you for calling. Your call is important to us. For billing, press one. "
        "For technical support, press two. To hear the main menu again, press star.",
        "keys:1",
        "You have reached billing. Please hold while we connect you.",
    ),
    _menu(
        "ivr-espanol", 20,
        "Welcome. For English, press one. Para español, oprima dos.",
        "keys:2",
        "Please listen carefully, as our menu options have changed.",
    ),
    _menu(
        "ivr-keys", 15,
        "Please enter your account number followed by the pound key.",
        "keys:4417#",
        "Thank you. Please enter your date of birth.",
        "keys:0312",
    ),
    _menu(
        "ivr-noisy", 8,
        "For account balances, press three. For all other questions, press zero.",
        "keys:3",
        "Returning to the main menu.",
    ),
    CallScript(
        "es-saldo", "es", False,
        (("es", "Hola, buenos días. Quiero saber el saldo de mi cuenta, por favor."),
         ("es", "Claro, un momento. Su saldo es de cien euros.")),
        20,
        ("hola", "cuenta"),
    ),
    CallScript(
        "es-factura", "es", False,
        (("es", "Buenas tardes, llamo porque mi factura de este mes es muy alta."),
         ("es", "Lo siento mucho, voy a revisar su factura ahora mismo.")),
        20,
    ),
    CallScript(
        "fr-commande", "fr", False,
        (("fr", "Bonjour, je voudrais annuler ma commande, s'il vous plaît."),
         ("fr", "Bien sûr, votre commande est annulée.")),
        20,
    ),
    CallScript(
        "de-rechnung", "de", False,
        (("de", "Guten Tag, ich habe eine Frage zu meiner Rechnung."),
         ("de", "Gerne, nennen Sie mir bitte Ihre Kundennummer.")),
        20,
    ),
)  # fmt: skip
BY_NAME = {call.name: call for call in CALLS}
