"""Words on the subscriber pages, per locale (English is the fallback)."""

TEXT = {
    "en": {
        "invalid": "This link is not valid. It may be incomplete, or it may have expired.",
        "unsub_title": "Unsubscribe",
        "unsub_ask": "Stop receiving emails about this course from {brand}?",
        "unsub_email": "Unsubscribe from emails",
        "unsub_all": "Stop all emails and texts",
        "unsub_done": "You are unsubscribed. You will not get more of these messages.",
        "prefs_title": "Your preferences",
        "prefs_email": "Send me lessons by email",
        "prefs_sms": "Send me lessons by text message",
        "prefs_save": "Save",
        "prefs_saved": "Your preferences are saved.",
        "prefs_blocked": "We cannot send to {channel} again because messages to it could not be delivered.",
        "contact_title": "Request a call from our care team",
        "contact_intro": "Tell us how to reach you. A member of the {brand} care team will contact you.",
        "contact_how": "How should we contact you?",
        "contact_phone": "Phone call", "contact_emailopt": "Email", "contact_sms": "Text message",
        "contact_when": "Best time to reach you (optional)",
        "contact_note": "Anything you want us to know (optional; please do not include private medical details)",
        "contact_send": "Send request",
        "contact_done": "Thank you. Our care team will contact you soon. In an emergency, call 911.",
        "footer": "{brand} · General education, not medical advice.",
    },
    "es": {
        "invalid": "Este enlace no es válido. Puede estar incompleto o haber vencido.",
        "unsub_title": "Cancelar suscripción",
        "unsub_ask": "¿Dejar de recibir correos de este curso de {brand}?",
        "unsub_email": "Cancelar los correos",
        "unsub_all": "Cancelar correos y mensajes de texto",
        "unsub_done": "Tu suscripción está cancelada. No recibirás más de estos mensajes.",
        "prefs_title": "Tus preferencias",
        "prefs_email": "Enviarme las clases por correo",
        "prefs_sms": "Enviarme las clases por mensaje de texto",
        "prefs_save": "Guardar",
        "prefs_saved": "Guardamos tus preferencias.",
        "prefs_blocked": "No podemos volver a enviar a {channel} porque los mensajes no se pudieron entregar.",
        "contact_title": "Pide una llamada de nuestro equipo de atención",
        "contact_intro": "Dinos cómo contactarte. Una persona del equipo de {brand} se comunicará contigo.",
        "contact_how": "¿Cómo prefieres que te contactemos?",
        "contact_phone": "Llamada", "contact_emailopt": "Correo", "contact_sms": "Mensaje de texto",
        "contact_when": "Mejor horario para contactarte (opcional)",
        "contact_note": "Algo que quieras contarnos (opcional; no incluyas datos médicos privados)",
        "contact_send": "Enviar",
        "contact_done": "Gracias. Nuestro equipo te contactará pronto. En una emergencia, llama al 911.",
        "footer": "{brand} · Información educativa, no consejo médico.",
    },
}


def words(locale: str | None, brand: str) -> dict[str, str]:
    lang = (locale or "en").split("-")[0].split("_")[0].lower()
    table = TEXT.get(lang, TEXT["en"])
    return {k: v.replace("{brand}", brand) for k, v in table.items()} | {"lang": lang if lang in TEXT else "en"}
