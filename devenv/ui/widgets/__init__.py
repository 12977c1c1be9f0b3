"""The dashboard's widgets. Each one is given data by the app; none reads the store itself."""
