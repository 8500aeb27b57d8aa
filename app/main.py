"""Streamlit front end of the soundscape map (placeholder until the app issue lands)."""

import streamlit as st

st.set_page_config(page_title="Sat2Sound soundscape map", layout="wide")
st.title("Sat2Sound soundscape map")
st.write("The interactive map is being built. The library is usable from Python and the `sat2sound` CLI.")
