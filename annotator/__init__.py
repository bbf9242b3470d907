"""The annotator-facing browser app: sign-in, home, and the comparison page people work in all day."""
