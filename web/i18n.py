"""Words on the subscriber pages, per locale (English is the fallback)."""

TEXT = {
    "en": {
        "invalid": "This link is not valid. It may be incomplete, or it may have expired.",
        "invalid_title": "Link not valid: {page}",
        "lesson_title": "Your lesson",
        "link_title": "A link from your lesson",
        "unsub_title": "Unsubscribe",
        # {what}: the channels named by ch_email, ch_sms or ch_all
        "ch_email": "emails",
        "ch_sms": "text messages",
        "ch_all": "emails and text messages",
        "unsub_ask": "Stop receiving {what} about this course from {brand}?",
        "unsub_stop": "Stop {what}",
        "unsub_all": "Stop all {what}",
        "unsub_done": "Done. You will get no more {what} from {brand} about this course.",
        "unsub_still": "You still get {what}. You can change that on your preferences page:",
        "unsub_nothing": "We hold no email address or phone number for you, so we send you nothing.",
        "prefs_title": "Your preferences",
        "prefs_email": "Send me lessons by email",
        "prefs_sms": "Send me lessons by text message",
        "prefs_save": "Save",
        "prefs_saved": "Your preferences are saved.",
        "prefs_blocked": "We cannot send {channel} again because messages to you could not be delivered.",
        "contact_title": "Request a call from our care team",
        "contact_intro": "Tell us how to reach you. A member of the {brand} care team will contact you.",
        "contact_how": "How should we contact you?",
        "contact_phone": "Phone call",
        "contact_emailopt": "Email",
        "contact_sms": "Text message",
        "contact_when": "Best time to reach you (optional)",
        "contact_note": "Anything you want us to know (optional; please do not include private medical details)",
        "contact_send": "Send request",
        "contact_phone_number": "Your phone number (needed for a call)",
        "contact_err_channel": "Choose how we should contact you.",
        "contact_err_phone_missing": "Enter the phone number we should use.",
        "contact_err_phone": "Enter a phone number with its area code, like 202-555-0143.",
        "contact_err_text": "Remove the special characters from your answers and try again.",
        "contact_done": (
            "Thank you. Our care team will contact you within {reply}. If your pain gets much "
            "worse or you notice a warning sign, call {number} now. Do not wait for our call."
        ),
        "contact_call": "Prefer to talk now? Call the care team at",
        "contact_hours": "We answer {hours}.",
        "contact_promise": "We call you back within {reply} of your request.",
        "contact_emergency": (
            "This form is not for emergencies. Call {number} now if your pain comes with "
            "numbness or tingling in the groin, buttocks or inner thighs; new trouble peeing or "
            "controlling your bladder or bowels; new or worse weakness or numbness in a leg; "
            "a fever or feeling very unwell; or, after a fall, severe pain or not being able "
            "to stand."
        ),
        "footer": "{brand} · General education, not medical advice.",
        "privacy": "Privacy",
        "terms": "Terms of use",
        "privacy_title": "Privacy policy",
        "terms_title": "Terms of use",
        "preview_banner": "Test preview — nothing is recorded.",
        "preview_done": "Test preview: nothing was changed. A subscriber would now read:",
        # The check-in question's answer page (/a/)
        "answer_title": "How is your pain today?",
        "answer_legend": "Your pain today, from 0 (no pain) to 10 (the worst pain you can imagine)",
        "answer_intro": "Check the number below, then press Save. You can change it first.",
        "answer_save": "Save my answer",
        "answer_done": "Thank you. Your answer is saved. You can come back to this link to change it.",
        "answer_bad": "Choose a number from 0 to 10.",
        "answer_not_watched": (
            "No one reads these answers for emergencies. If your pain is severe or you notice "
            "a warning sign, call {number} now."
        ),
        # Sign-up and confirmation pages (web/signup.py)
        "signup_title": "Sign up for lessons from {brand}",
        "signup_intro": "Short lessons by email or text, a few times a week. Free, and you can stop at any time.",
        "signup_first_name": "First name (optional)",
        "signup_email": "Email address",
        "signup_phone": "Mobile number (for texts)",
        "signup_timezone": "Your time zone",
        "signup_language": "Language for the lessons",
        "signup_channels": "How should we send the lessons?",
        "signup_channel_email": "By email",
        "signup_submit": "Sign up",
        "signup_other_lang": "Español",
        "signup_check_email": "Thank you. Please check your email and click the link to confirm.",
        "signup_done": "Thank you, you're in. Your first lesson is on its way.",
        "signup_err_first_name": "Enter your first name as plain text.",
        "signup_err_email": "Enter an email address like name@example.com.",
        "signup_err_phone": "Enter a mobile number with its area code, like 202-555-0143.",
        "signup_err_phone_type": "We can only text mobile numbers. This one is a landline, toll-free, premium-rate or other number that cannot get our texts.",
        "signup_err_phone_country": "We can only text mobile numbers in {countries}.",
        "signup_check_phone": "Watch for a text from us and reply YES to get our texts.",
        "signup_err_timezone": "Choose a time zone from the list.",
        "signup_err_locale": "Choose English or Spanish.",
        "signup_err_channels": "Choose email, text messages or both, and fill in that address.",
        "signup_privacy": "We use your details only to send these lessons. Please do not send private medical details.",
        "tz_us": "United States",
        "tz_other": "Other time zones",
        "tz_eastern": "Eastern (New York)",
        "tz_central": "Central (Chicago)",
        "tz_mountain": "Mountain (Denver)",
        "tz_arizona": "Arizona (Phoenix)",
        "tz_pacific": "Pacific (Los Angeles)",
        "tz_alaska": "Alaska (Anchorage)",
        "tz_hawaii": "Hawaii (Honolulu)",
        "tz_puerto_rico": "Puerto Rico (San Juan)",
        "tz_utc": "Coordinated Universal Time (UTC)",
        "lang_en": "English",
        "lang_es": "Spanish",
        "confirm_title": "Confirm your email",
        "confirm_ask": "Press the button to confirm that you want to receive lessons from {brand}.",
        "confirm_button": "Confirm",
        "confirm_done": "Thank you, your email is confirmed. Your first lesson is on its way.",
        "confirm_stop_title": "Stop these emails",
        "confirm_stop_ask": "Press the button and {brand} will send no more email to this "
        "address, sign-up confirmations included.",
        "confirm_stop_button": "Stop emails",
        "confirm_stop_done": "Done. We will send no more email to this address.",
        "too_many": "Too many sign-ups were sent from here or for this address. "
        "Please try again in {minutes} min.",
    },
    "es": {
        "invalid": "Este enlace no es válido. Puede estar incompleto o haber vencido.",
        "invalid_title": "Enlace no válido: {page}",
        "lesson_title": "Tu clase",
        "link_title": "Un enlace de tu clase",
        "unsub_title": "Cancelar suscripción",
        "ch_email": "correos",
        "ch_sms": "mensajes de texto",
        "ch_all": "correos y mensajes de texto",
        "unsub_ask": "¿Dejar de recibir {what} de este curso de {brand}?",
        "unsub_stop": "No recibir más {what}",
        "unsub_all": "Dejar de recibir todos los {what}",
        "unsub_done": "Listo. No recibirás más {what} de {brand} sobre este curso.",
        "unsub_still": "Sigues recibiendo {what}. Puedes cambiarlo en tus preferencias:",
        "unsub_nothing": "No tenemos ningún correo ni número de teléfono tuyo, así que no te enviamos nada.",
        "prefs_title": "Tus preferencias",
        "prefs_email": "Enviarme las clases por correo",
        "prefs_sms": "Enviarme las clases por mensaje de texto",
        "prefs_save": "Guardar",
        "prefs_saved": "Guardamos tus preferencias.",
        "prefs_blocked": "No podemos volver a enviarte {channel} porque los mensajes no se pudieron entregar.",
        "contact_title": "Pide una llamada de nuestro equipo de atención",
        "contact_intro": "Dinos cómo contactarte. Una persona del equipo de {brand} se comunicará contigo.",
        "contact_how": "¿Cómo prefieres que te contactemos?",
        "contact_phone": "Llamada",
        "contact_emailopt": "Correo",
        "contact_sms": "Mensaje de texto",
        "contact_when": "Mejor horario para contactarte (opcional)",
        "contact_note": "Algo que quieras contarnos (opcional; no incluyas datos médicos privados)",
        "contact_send": "Enviar",
        "contact_phone_number": "Tu número de teléfono (necesario para llamarte)",
        "contact_err_channel": "Elige cómo quieres que te contactemos.",
        "contact_err_phone_missing": "Escribe el número de teléfono que debemos usar.",
        "contact_err_phone": "Escribe un número de teléfono con su código de área, como 202-555-0143.",
        "contact_err_text": "Quita los caracteres especiales de tus respuestas e inténtalo de nuevo.",
        "contact_done": (
            "Gracias. Nuestro equipo se comunicará contigo en menos de {reply}. Si el dolor "
            "empeora mucho o notas una señal de alarma, llama al {number} ahora. No esperes "
            "nuestra llamada."
        ),
        "contact_call": "¿Prefieres hablar ahora? Llama al equipo de atención al",
        "contact_hours": "Horario: {hours}.",
        "contact_promise": "Te llamamos en menos de {reply} desde que nos escribes.",
        "contact_emergency": (
            "Este formulario no es para emergencias. Llama al {number} ahora si el dolor viene "
            "con hormigueo o adormecimiento en la ingle, las nalgas o la parte de adentro de "
            "los muslos; problemas nuevos para orinar o para controlar la orina o las heces; "
            "debilidad o adormecimiento nuevo o peor en una pierna; fiebre o sentirte muy mal; "
            "o, después de una caída, dolor muy fuerte o no poder ponerte de pie."
        ),
        "footer": "{brand} · Información educativa, no consejo médico.",
        "privacy": "Privacidad",
        "terms": "Términos de uso",
        "privacy_title": "Política de privacidad",
        "terms_title": "Términos de uso",
        "preview_banner": "Vista de prueba: no se guarda nada.",
        "preview_done": "Vista de prueba: no se cambió nada. Una persona suscrita leería:",
        "answer_title": "¿Cómo está tu dolor hoy?",
        "answer_legend": "Tu dolor hoy, de 0 (nada de dolor) a 10 (el peor dolor que puedas imaginar)",
        "answer_intro": "Revisa el número de abajo y presiona Guardar. Puedes cambiarlo antes.",
        "answer_save": "Guardar mi respuesta",
        "answer_done": "Gracias. Guardamos tu respuesta. Puedes volver a este enlace para cambiarla.",
        "answer_bad": "Elige un número del 0 al 10.",
        "answer_not_watched": (
            "Nadie lee estas respuestas para emergencias. Si tu dolor es fuerte o notas una "
            "señal de alarma, llama al {number} ahora."
        ),
        # Sign-up and confirmation pages (web/signup.py)
        "signup_title": "Inscríbete para recibir clases de {brand}",
        "signup_intro": "Clases breves por correo o mensaje de texto, algunas veces por semana. Gratis, y puedes dejarlas cuando quieras.",
        "signup_first_name": "Nombre (opcional)",
        "signup_email": "Correo electrónico",
        "signup_phone": "Número de celular (para mensajes de texto)",
        "signup_timezone": "Tu zona horaria",
        "signup_language": "Idioma de las clases",
        "signup_channels": "¿Cómo quieres recibir las clases?",
        "signup_channel_email": "Por correo",
        "signup_submit": "Inscribirme",
        "signup_other_lang": "English",
        "signup_check_email": "Gracias. Revisa tu correo y haz clic en el enlace para confirmar.",
        "signup_done": "Gracias, tu inscripción está lista. Tu primera clase va en camino.",
        "signup_err_first_name": "Escribe tu nombre como texto simple.",
        "signup_err_email": "Escribe un correo como nombre@ejemplo.com.",
        "signup_err_phone": "Escribe un número de celular con su código de área, como 202-555-0143.",
        "signup_err_phone_type": "Solo podemos enviar mensajes a números de celular. Este es un número fijo, gratuito, de tarifa especial u otro que no puede recibir nuestros mensajes.",
        "signup_err_phone_country": "Solo podemos enviar mensajes a celulares de {countries}.",
        "signup_check_phone": "Te enviaremos un mensaje de texto: responde SI para recibir nuestros mensajes.",
        "signup_err_timezone": "Elige una zona horaria de la lista.",
        "signup_err_locale": "Elige inglés o español.",
        "signup_err_channels": "Elige correo, mensajes de texto o ambos, y escribe esa dirección.",
        "signup_privacy": "Usamos tus datos solo para enviarte estas clases. No envíes datos médicos privados.",
        "tz_us": "Estados Unidos",
        "tz_other": "Otras zonas horarias",
        "tz_eastern": "Este (Nueva York)",
        "tz_central": "Centro (Chicago)",
        "tz_mountain": "Montaña (Denver)",
        "tz_arizona": "Arizona (Phoenix)",
        "tz_pacific": "Pacífico (Los Ángeles)",
        "tz_alaska": "Alaska (Anchorage)",
        "tz_hawaii": "Hawái (Honolulu)",
        "tz_puerto_rico": "Puerto Rico (San Juan)",
        "tz_utc": "Tiempo universal coordinado (UTC)",
        "lang_en": "Inglés",
        "lang_es": "Español",
        "confirm_title": "Confirma tu correo",
        "confirm_ask": "Presiona el botón para confirmar que quieres recibir las clases de {brand}.",
        "confirm_button": "Confirmar",
        "confirm_done": "Gracias, tu correo está confirmado. Tu primera clase va en camino.",
        "confirm_stop_title": "Dejar de recibir estos correos",
        "confirm_stop_ask": "Presiona el botón y {brand} no enviará más correos a esta "
        "dirección, ni confirmaciones de inscripción.",
        "confirm_stop_button": "Dejar de recibir correos",
        "confirm_stop_done": "Listo. No enviaremos más correos a esta dirección.",
        "too_many": "Se enviaron demasiadas inscripciones desde aquí o para esta dirección. "
        "Inténtalo de nuevo en {minutes} min.",
    },
}


def words(locale: str | None, brand: str) -> dict[str, str]:
    lang = (locale or "en").split("-")[0].split("_")[0].lower()
    table = TEXT.get(lang, TEXT["en"])
    return {k: v.replace("{brand}", brand) for k, v in table.items()} | {
        "lang": lang if lang in TEXT else "en"
    }


def accepted_lang(header: str | None) -> str:
    """The page language a browser's Accept-Language asks for (en or es), for a page
    nobody's record can tell: the highest-weighted of our languages, English by default."""
    best, best_q = "en", 0.0
    for part in (header or "")[:500].split(","):
        tag, _, params = part.strip().partition(";")
        lang = tag.strip().split("-")[0].lower()
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if lang in TEXT and q > best_q:
            best, best_q = lang, q
    return best


def channel_words(t: dict[str, str], channels) -> str:
    """The channels a page stops or keeps, as the person reads them ("text messages")."""
    chosen = set(channels)
    if chosen >= {"email", "sms"}:
        return t["ch_all"]
    return t["ch_sms"] if "sms" in chosen else t["ch_email"]
