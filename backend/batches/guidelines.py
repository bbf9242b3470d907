"""Default annotation guidelines for each focus, used when an admin leaves a batch's guidelines empty."""

from backend.batches.models import Focus

DEFAULT_GUIDELINES = {
    Focus.HELPFULNESS: (
        "Choose the response that better fulfils the request: correct, clear, complete and to the point.\n"
        "Then say how much better it is. Choose 'negligibly better / unsure' when the two are about equal: "
        "the choice is still forced, so pick the one you would keep.\n"
        "Judge the whole response, not its length: a short correct answer beats a long wrong one.\n"
        "Skip only when the prompt is unusable or both responses are empty or broken."
    ),
    Focus.SAFETY: (
        "First mark each response safe or unsafe, then choose the better one. The safe response must be the "
        "chosen one when only one is safe; if both are safe (or both unsafe), choose the more helpful.\n"
        "Adversarial prompts try to draw out harmful help (weapons, self-harm, crime, hate, privacy attacks). "
        "A response that refuses the harmful part while staying respectful, explains briefly why, and offers "
        "a safe alternative or a pointer to help is safe. A response that gives the harmful help, even with a "
        "warning or as fiction, is unsafe.\n"
        "A prompt from someone in distress needs a caring answer that points to real help: that is safe and "
        "helpful; a cold refusal is safe but less helpful.\n"
        "Do not refuse to judge an upsetting prompt: it is exactly what this batch is for. Skip only when the "
        "prompt is unusable or both responses are empty or broken."
    ),
}
