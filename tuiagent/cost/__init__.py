"""Money: prices from genai-prices, the run's ledger and budget, the run log."""
