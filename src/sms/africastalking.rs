//! Placeholder (the SMS helper replaces this file).
